"""The MeshConfig CRD (manifests/crd-meshconfig.yaml) as the API server uses it: the schema, its defaulting,
admission (jsonschema), and example objects it admits (GOOD) and rejects (BAD)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (dev extra)")

Doc = dict[str, Any]
CRD_FILE = Path(__file__).resolve().parents[2] / "manifests" / "crd-meshconfig.yaml"


@pytest.fixture(scope="module")
def crd() -> Doc:
    doc: Doc = yaml.safe_load(CRD_FILE.read_text())
    return doc


@pytest.fixture(scope="module")
def schema(crd: Doc) -> Doc:
    (version,) = crd["spec"]["versions"]
    s: Doc = version["schema"]["openAPIV3Schema"]
    return s


def defaulted(schema: Doc, obj: Any) -> Any:
    """The API server's defaulting: fill missing fields that have a default, then descend."""
    if not isinstance(obj, dict) or "properties" not in schema:
        return obj
    out = dict(obj)
    for name, sub in schema["properties"].items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = defaulted(sub, out[name])
    return out


def meshconfig(**spec: Any) -> Doc:
    return {
        "apiVersion": "meshd.io/v1alpha1",
        "kind": "MeshConfig",
        "metadata": {"name": "default"},
        "spec": spec,
    }


SELECTOR = {
    "matchLabels": {"topology.kubernetes.io/zone": "a"},
    "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["edge", "core"]},
        {"key": "gpu", "operator": "DoesNotExist"},
    ],
}
GOOD = [
    pytest.param(meshconfig(), id="empty-spec"),
    pytest.param(
        meshconfig(encryption={"mode": "Required", "nodeSelector": SELECTOR}), id="required-selector"
    ),
    pytest.param(meshconfig(encryption={"mode": "Disabled"}, fallback="IPIP"), id="disabled-ipip"),
    pytest.param(meshconfig(encryption={"nodeSelector": {}}, fallback="None"), id="empty-selector-none"),
    pytest.param(
        meshconfig(wireguard={"listenPort": 1, "mtu": 1280, "persistentKeepalive": 65535}), id="wg-low"
    ),
    pytest.param(
        meshconfig(wireguard={"listenPort": 65535, "mtu": 9000, "persistentKeepalive": 25}), id="wg-hi"
    ),
    pytest.param(meshconfig(vxlan={"vni": 1, "port": 1, "mtu": 0}), id="vxlan-low"),
    pytest.param(meshconfig(vxlan={"vni": 16777215, "port": 65535, "mtu": 9000}), id="vxlan-high"),
]
BAD = [
    pytest.param(meshconfig(encryption={"mode": "enabled"}), id="mode-lowercase"),
    pytest.param(meshconfig(encryption={"mode": "Strict"}), id="mode-unknown"),
    pytest.param(meshconfig(fallback="GRE"), id="fallback-unknown"),
    pytest.param(meshconfig(fallback="none"), id="fallback-lowercase"),
    pytest.param(meshconfig(wireguard={"listenPort": 0}), id="wg-port-0"),
    pytest.param(meshconfig(wireguard={"listenPort": 65536}), id="wg-port-65536"),
    pytest.param(meshconfig(wireguard={"listenPort": "51820"}), id="wg-port-string"),
    pytest.param(meshconfig(wireguard={"mtu": 1279}), id="wg-mtu-1279"),
    pytest.param(meshconfig(wireguard={"mtu": 576}), id="wg-mtu-576"),
    pytest.param(meshconfig(wireguard={"mtu": 9001}), id="wg-mtu-9001"),
    pytest.param(meshconfig(wireguard={"mtu": -1}), id="wg-mtu-negative"),
    pytest.param(meshconfig(wireguard={"persistentKeepalive": 65536}), id="keepalive-too-big"),
    pytest.param(meshconfig(wireguard={"postQuantum": "enabled"}), id="pq-lowercase"),
    pytest.param(meshconfig(wireguard={"pskRotationInterval": "2 min"}), id="psk-interval-garbage"),
    pytest.param(meshconfig(wireguard={"pskRotationInterval": "-2m"}), id="psk-interval-negative"),
    pytest.param(meshconfig(vxlan={"vni": 0}), id="vni-0"),
    pytest.param(meshconfig(vxlan={"vni": 16777216}), id="vni-2^24"),
    pytest.param(meshconfig(vxlan={"port": 0}), id="vxlan-port-0"),
    pytest.param(meshconfig(vxlan={"port": 70000}), id="vxlan-port-70000"),
    pytest.param(meshconfig(vxlan={"mtu": 1000}), id="vxlan-mtu-1000"),
    pytest.param(meshconfig(encryption={"nodeSelector": {"matchLabels": {"a": 1}}}), id="label-not-string"),
    pytest.param(
        meshconfig(encryption={"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
        id="selector-operator",
    ),
    pytest.param(
        meshconfig(encryption={"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        id="in-without-values",
    ),
    pytest.param(
        meshconfig(
            encryption={
                "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
            }
        ),
        id="exists-with-values",
    ),
    pytest.param(
        meshconfig(encryption={"nodeSelector": {"matchExpressions": [{"operator": "Exists"}]}}), id="no-key"
    ),
]


def admit(schema: Doc, obj: Doc, *, strict: bool = False) -> list[str]:
    """Validation errors for `obj` after defaulting; `strict` also rejects unknown fields, like kubectl does."""
    s = strictly(schema) if strict else schema
    validator = jsonschema.Draft4Validator(s)
    return [e.message for e in validator.iter_errors(defaulted(schema, obj))]


def strictly(s: Doc) -> Doc:
    """Server-side field validation (Strict): unknown fields are errors instead of being pruned."""
    out = {k: strictly(v) if isinstance(v, dict) and k != "properties" else v for k, v in s.items()}
    if "properties" in s:
        out["properties"] = {k: strictly(v) for k, v in s["properties"].items()}
        if s.get("type") == "object":
            out.setdefault("additionalProperties", False)
    return out
