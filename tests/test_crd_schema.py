"""The MeshConfig CRD's schema, checked the way the API server would use it (no API server runs here).

- structural-schema rules the API server enforces when the CRD is created,
- defaulting: an empty MeshConfig becomes the documented defaults,
- admission: example objects validated with jsonschema (OpenAPI v3 is close to JSON Schema draft 4;
  the `x-kubernetes-*` and `format` keywords are ignored, so every rule lives in plain keywords),
- agreement with `meshd.core.codec.decode_meshconfig`, the agent's reader of the same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.core import codec as core_codec
from meshd.core.model import MeshConfig
from meshd.errors import ConfigError

jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (dev extra)")

Doc = dict[str, Any]
CRD_FILE = Path(__file__).resolve().parent.parent / "manifests" / "crd-meshconfig.yaml"
JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
FORBIDDEN_IN_JUNCTORS = ("type", "default", "description", "additionalProperties", "nullable")


@pytest.fixture(scope="module")
def crd() -> Doc:
    doc: Doc = yaml.safe_load(CRD_FILE.read_text())
    return doc


@pytest.fixture(scope="module")
def schema(crd: Doc) -> Doc:
    (version,) = crd["spec"]["versions"]
    s: Doc = version["schema"]["openAPIV3Schema"]
    return s


def test_crd_names_scope_and_subresources(crd: Doc) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "meshconfigs.meshd.io"
    assert (spec["group"], spec["scope"]) == ("meshd.io", "Cluster")
    assert spec["names"]["kind"] == "MeshConfig"
    assert spec["names"]["plural"] == "meshconfigs"
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Mode": ".spec.encryption.mode",
        "Fallback": ".spec.fallback",
        "Accepted": '.status.conditions[?(@.type=="Accepted")].status',
        "Nodes": ".status.nodes.total",
        "Applied": ".status.nodes.applied",
        "Ready": ".status.nodes.ready",
        "Encrypted": ".status.nodes.encrypted",
        "Age": ".metadata.creationTimestamp",
    }


def nodes(s: Doc, path: str = "", *, in_junctor: bool = False) -> Iterator[tuple[str, Doc, bool]]:
    yield path, s, in_junctor
    for name, sub in s.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}", in_junctor=in_junctor)
    if isinstance(s.get("items"), dict):
        yield from nodes(s["items"], f"{path}[]", in_junctor=in_junctor)
    if isinstance(s.get("additionalProperties"), dict):
        yield from nodes(s["additionalProperties"], f"{path}{{}}", in_junctor=in_junctor)
    for j in JUNCTORS:
        for i, sub in enumerate(s.get(j, []) if j != "not" else [s[j]] if j in s else []):
            yield from nodes(sub, f"{path}<{j}{i}>", in_junctor=True)


def test_schema_is_structural(schema: Doc) -> None:
    for path, node, in_junctor in nodes(schema):
        if in_junctor:
            assert not set(FORBIDDEN_IN_JUNCTORS) & set(node), f"{path}: not allowed inside anyOf/allOf/..."
        else:
            assert node.get("type"), f"{path}: every node outside junctors needs a type"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: mutually exclusive"
        for j in ("anyOf", "allOf", "oneOf"):
            for branch in node.get(j, []):
                unknown = set(branch.get("properties", {})) - set(node.get("properties", {}))
                assert not unknown, f"{path}: {unknown} in {j} must be declared outside it too"
    assert set(schema["properties"]["metadata"]) == {"type"}


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


DEFAULT_SPEC = {
    "encryption": {"mode": "Enabled"},
    "fallback": "VXLAN",
    "wireguard": {
        "listenPort": 51820,
        "mtu": 0,
        "persistentKeepalive": 0,
        "postQuantum": "Disabled",
        "pskRotationInterval": "2m",
    },
    "vxlan": {"vni": 4096, "port": 4789, "mtu": 0},
}


@pytest.mark.parametrize(
    "obj", [{}, {"spec": {}}, {"spec": {"wireguard": {}}}], ids=["no-spec", "empty", "empty-wg"]
)
def test_defaulting_fills_in_the_documented_defaults(schema: Doc, obj: Doc) -> None:
    assert defaulted(schema, obj)["spec"] == DEFAULT_SPEC


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


@pytest.mark.parametrize("obj", GOOD)
def test_good_meshconfigs_are_admitted(schema: Doc, obj: Doc) -> None:
    assert admit(schema, obj, strict=True) == []


@pytest.mark.parametrize("obj", BAD)
def test_bad_meshconfigs_are_rejected(schema: Doc, obj: Doc) -> None:
    assert admit(schema, obj) != []


def test_unknown_fields_are_rejected_under_strict_field_validation(schema: Doc) -> None:
    typo = meshconfig(wireguard={"listenprot": 51821})
    assert admit(schema, typo) == []  # pruned by the API server, like any structural schema
    assert any("listenprot" in e for e in admit(schema, typo, strict=True))


def test_default_object_in_manifests_is_admitted(schema: Doc) -> None:
    path = CRD_FILE.parent / "meshconfig-default.yaml"
    obj = yaml.safe_load(path.read_text())
    assert admit(schema, obj, strict=True) == []
    assert defaulted(schema, obj)["spec"] == DEFAULT_SPEC


# --- agreement with the agent's decoder ------------------------------------------------------------


def codec() -> Any:
    return core_codec


def test_defaulted_empty_meshconfig_decodes_to_the_model_defaults(schema: Doc) -> None:
    decoded = codec().decode_meshconfig(defaulted(schema, meshconfig()))
    assert decoded == MeshConfig()


@pytest.mark.parametrize("obj", GOOD)
def test_codec_accepts_what_the_crd_admits(schema: Doc, obj: Doc) -> None:
    codec().decode_meshconfig(defaulted(schema, obj))


@pytest.mark.parametrize("obj", BAD)
def test_codec_refuses_what_the_crd_rejects(obj: Doc) -> None:
    with pytest.raises(ConfigError, match=r"^spec\."):  # the message starts with the field path
        codec().decode_meshconfig(obj)


def leaf_paths(s: Doc, path: str = "") -> set[str]:
    props = s.get("properties")
    if not props:
        return {path}
    return set().union(*(leaf_paths(sub, f"{path}.{k}") for k, sub in props.items()))


def test_every_crd_spec_field_is_read_by_the_codec(schema: Doc) -> None:
    """Each leaf of spec, set to a non-default valid value alone, changes what the agent decodes."""
    values = {
        ".encryption.mode": "Disabled",
        ".encryption.nodeSelector": {"matchLabels": {"a": "b"}},
        ".fallback": "None",
        ".wireguard.listenPort": 51821,
        ".wireguard.mtu": 1420,
        ".wireguard.persistentKeepalive": 25,
        ".wireguard.keyRotationInterval": "720h",
        ".wireguard.postQuantum": "Enabled",
        ".wireguard.pskRotationInterval": "20s",
        ".vxlan.vni": 7,
        ".vxlan.port": 8472,
        ".vxlan.mtu": 1450,
    }
    spec_schema = copy.deepcopy(schema["properties"]["spec"])
    spec_schema["properties"]["encryption"]["properties"]["nodeSelector"].pop("properties")
    assert leaf_paths(spec_schema) == set(values)
    decode = codec().decode_meshconfig
    for path, value in values.items():
        spec: Doc = {}
        *parents, leaf = path.strip(".").split(".")
        cursor = spec
        for p in parents:
            cursor = cursor.setdefault(p, {})
        cursor[leaf] = value
        assert decode(meshconfig(**spec)) != MeshConfig(), f"spec{path} is ignored by decode_meshconfig"
