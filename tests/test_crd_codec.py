"""The MeshConfig CRD agrees with `meshd.core.codec.decode_meshconfig`, the agent's reader of the same
objects: what the schema admits (after the API server's defaulting) decodes, what it rejects does not,
and every spec field the CRD declares is read."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshd.core import codec as core_codec
from meshd.core.model import MeshConfig
from meshd.errors import ConfigError
from tests.support.crd import BAD, GOOD, Doc, crd, defaulted, meshconfig, schema

__all__ = ["crd", "schema"]  # fixtures


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
