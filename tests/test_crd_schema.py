"""The MeshConfig CRD's schema, checked the way the API server would use it (no API server runs here).

- structural-schema rules the API server enforces when the CRD is created,
- defaulting: an empty MeshConfig becomes the documented defaults,
- admission: example objects validated with jsonschema (OpenAPI v3 is close to JSON Schema draft 4;
  the `x-kubernetes-*` and `format` keywords are ignored, so every rule lives in plain keywords),
- agreement with `meshd.core.codec.decode_meshconfig`, the agent's reader of the same objects:
  test_crd_codec.py (the CRD, its defaulting and the example objects: tests/support/crd.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.support.crd import BAD, CRD_FILE, GOOD, Doc, admit, crd, defaulted, meshconfig, schema

__all__ = ["crd", "schema"]  # fixtures

JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
FORBIDDEN_IN_JUNCTORS = ("type", "default", "description", "additionalProperties", "nullable")


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
