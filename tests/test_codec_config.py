"""MeshConfig objects <-> MeshConfig values: what users write, what is accepted, and how rejections read."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.core.codec import decode_meshconfig, encode_meshconfig
from meshd.core.model import (
    EncryptionMode,
    Fallback,
    LabelRequirement,
    LabelSelector,
    MeshConfig,
    SelectorOperator,
    VxlanSettings,
    WireGuardSettings,
)
from meshd.errors import ConfigError
from tests.strategies import json_values, mesh_configs

HEAD = {"apiVersion": "meshd.io/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"}}


def cfg(spec: Any = None, **top: Any) -> dict[str, Any]:
    """A MeshConfig object with the given spec (omitted when None) and top-level fields replaced."""
    obj: dict[str, Any] = {**HEAD, **top}
    if spec is not None:
        obj["spec"] = spec
    return obj


FULL_OBJECT = cfg(
    {
        "encryption": {
            "mode": "Required",
            "nodeSelector": {
                "matchLabels": {"pool": "secure"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
        },
        "fallback": "None",
        "wireguard": {
            "listenPort": 51821,
            "mtu": 1420,
            "persistentKeepalive": 25,
            "postQuantum": "Enabled",
            "pskRotationInterval": "20s",
        },
        "vxlan": {"vni": 1, "port": 8472, "mtu": 9000},
    },
    metadata={"name": "default", "generation": 4, "uid": "x", "resourceVersion": "9"},
    status={"anything": True},
)
FULL = MeshConfig(
    mode=EncryptionMode.REQUIRED,
    node_selector=LabelSelector(
        match_labels=(("pool", "secure"),),
        match_expressions=(
            LabelRequirement("zone", SelectorOperator.IN, frozenset({"a", "b"})),
            LabelRequirement("legacy", SelectorOperator.DOES_NOT_EXIST),
        ),
    ),
    fallback=Fallback.NONE,
    wireguard=WireGuardSettings(
        listen_port=51821, mtu=1420, persistent_keepalive=25, post_quantum=True, psk_rotation_interval=20.0
    ),
    vxlan=VxlanSettings(vni=1, port=8472, mtu=9000),
    generation=4,
)

# fmt: off
GOOD = [
    ("no-object", None, MeshConfig()),
    ("no-spec", cfg(), MeshConfig()),
    ("empty-object", {}, MeshConfig()),
    ("null-spec", {**HEAD, "spec": None}, MeshConfig()),
    ("minimal", cfg({"encryption": {"mode": "Disabled"}}), MeshConfig(mode=EncryptionMode.DISABLED)),
    ("full", FULL_OBJECT, FULL),
    ("empty-selector", cfg({"encryption": {"nodeSelector": {}}}), MeshConfig()),
    ("null-selector", cfg({"encryption": {"nodeSelector": None}}), MeshConfig()),
    ("exists-with-empty-values", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": []}]}}}),
     MeshConfig(node_selector=LabelSelector(match_expressions=(LabelRequirement("k", SelectorOperator.EXISTS),)))),
    ("generation", cfg(metadata={"name": "default", "generation": 12}), MeshConfig(generation=12)),
    ("mtu-zero", cfg({"wireguard": {"mtu": 0}, "vxlan": {"mtu": 0}}), MeshConfig()),
    ("bounds", cfg({"wireguard": {"listenPort": 65535, "mtu": 1280, "persistentKeepalive": 65535}, "vxlan": {"vni": 16777215, "port": 1}}),
     MeshConfig(wireguard=WireGuardSettings(65535, 1280, 65535), vxlan=VxlanSettings(16777215, 1, 0))),
    ("ipip-fallback", cfg({"fallback": "IPIP"}), MeshConfig(fallback=Fallback.IPIP)),
]

SEL = "spec.encryption.nodeSelector"
BAD = [
    ("not-an-object", ["spec"], "MeshConfig: expected an object, got a list"),
    ("unknown-top-level", cfg(sepc={}), "sepc: unknown field"),
    ("wrong-api-version", cfg(apiVersion="v1"), "apiVersion: expected 'meshd.io/v1alpha1', got 'v1'"),
    ("wrong-kind", cfg(kind="ConfigMap"), "kind: expected 'MeshConfig', got 'ConfigMap'"),
    ("metadata-is-list", cfg(metadata=[]), "metadata: expected an object, got a list"),
    ("negative-generation", cfg(metadata={"generation": -1}), "metadata.generation: expected an integer in 0..9223372036854775807, got -1"),
    ("bool-generation", cfg(metadata={"generation": True}), "metadata.generation: expected an integer, got a boolean"),
    ("spec-is-string", cfg("Enabled"), "spec: expected an object, got a string"),
    ("unknown-spec-field", cfg({"encrypt": {}}), "spec.encrypt: unknown field"),
    ("unknown-wireguard-field", cfg({"wireguard": {"listenprot": 1}}), "spec.wireguard.listenprot: unknown field"),
    ("unknown-vxlan-field", cfg({"vxlan": {"VNI": 1}}), "spec.vxlan.VNI: unknown field"),
    ("unknown-encryption-field", cfg({"encryption": {"enabled": True}}), "spec.encryption.enabled: unknown field"),
    ("unknown-selector-field", cfg({"encryption": {"nodeSelector": {"zone": "a"}}}), f"{SEL}.zone: unknown field"),
    ("odd-unknown-key", cfg({1: 2}), "spec.[1]: unknown field"),
    ("encryption-is-bool", cfg({"encryption": True}), "spec.encryption: expected an object, got a boolean"),
    ("mode-lower-case", cfg({"encryption": {"mode": "enabled"}}), "spec.encryption.mode: expected one of Enabled, Disabled, Required, got 'enabled'"),
    ("mode-is-bool", cfg({"encryption": {"mode": True}}), "spec.encryption.mode: expected a string, got a boolean"),
    ("mode-is-null", cfg({"encryption": {"mode": None}}), "spec.encryption.mode: expected a string, got null"),
    ("fallback-unknown", cfg({"fallback": "GRE"}), "spec.fallback: expected one of VXLAN, IPIP, None, got 'GRE'"),
    ("fallback-yaml-null", cfg({"fallback": None}), "spec.fallback: expected a string, got null"),
    ("wireguard-is-list", cfg({"wireguard": [51820]}), "spec.wireguard: expected an object, got a list"),
    ("port-is-bool", cfg({"wireguard": {"listenPort": True}}), "spec.wireguard.listenPort: expected an integer, got a boolean"),
    ("port-is-string", cfg({"wireguard": {"listenPort": "51820"}}), "spec.wireguard.listenPort: expected an integer, got a string"),
    ("port-is-float", cfg({"wireguard": {"listenPort": 51820.0}}), "spec.wireguard.listenPort: expected an integer, got a number"),
    ("port-zero", cfg({"wireguard": {"listenPort": 0}}), "spec.wireguard.listenPort: expected an integer in 1..65535, got 0"),
    ("port-too-big", cfg({"wireguard": {"listenPort": 65536}}), "spec.wireguard.listenPort: expected an integer in 1..65535, got 65536"),
    ("wg-mtu-too-small", cfg({"wireguard": {"mtu": 1279}}), "spec.wireguard.mtu: expected 0 or an integer in 1280..9000, got 1279"),
    ("wg-mtu-too-big", cfg({"wireguard": {"mtu": 9001}}), "spec.wireguard.mtu: expected 0 or an integer in 1280..9000, got 9001"),
    ("keepalive-negative", cfg({"wireguard": {"persistentKeepalive": -1}}), "spec.wireguard.persistentKeepalive: expected an integer in 0..65535, got -1"),
    ("vni-zero", cfg({"vxlan": {"vni": 0}}), "spec.vxlan.vni: expected an integer in 1..16777215, got 0"),
    ("vni-too-big", cfg({"vxlan": {"vni": 2**24}}), "spec.vxlan.vni: expected an integer in 1..16777215, got 16777216"),
    ("vxlan-port-zero", cfg({"vxlan": {"port": 0}}), "spec.vxlan.port: expected an integer in 1..65535, got 0"),
    ("vxlan-mtu-small", cfg({"vxlan": {"mtu": 576}}), "spec.vxlan.mtu: expected 0 or an integer in 1280..9000, got 576"),
    ("huge-integer", cfg({"vxlan": {"vni": 10**5000}}), "spec.vxlan.vni: expected an integer in 1..16777215, got a very large integer"),
    ("match-labels-is-list", cfg({"encryption": {"nodeSelector": {"matchLabels": ["a"]}}}), f"{SEL}.matchLabels: expected an object, got a list"),
    ("match-label-value-int", cfg({"encryption": {"nodeSelector": {"matchLabels": {"zone": 1}}}}), f"{SEL}.matchLabels.zone: expected a string, got an integer"),
    ("match-label-key-int", cfg({"encryption": {"nodeSelector": {"matchLabels": {1: "a"}}}}), f"{SEL}.matchLabels.[1]: expected a string key, got an integer"),
    ("expressions-is-object", cfg({"encryption": {"nodeSelector": {"matchExpressions": {}}}}), f"{SEL}.matchExpressions: expected a list, got an object"),
    ("expression-is-string", cfg({"encryption": {"nodeSelector": {"matchExpressions": ["zone"]}}}), f"{SEL}.matchExpressions[0]: expected an object, got a string"),
    ("expression-no-key", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"operator": "Exists"}]}}}), f"{SEL}.matchExpressions[0].key: required field is missing"),
    ("expression-no-operator", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k"}]}}}), f"{SEL}.matchExpressions[0].operator: required field is missing"),
    ("expression-empty-key", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}}}), f"{SEL}.matchExpressions[0].key: must not be empty"),
    ("expression-bad-operator", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Equals", "values": ["a"]}]}}}), f"{SEL}.matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist, got 'Equals'"),
    ("in-without-values", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}}), f"{SEL}.matchExpressions[0].values: must not be empty for operator In"),
    ("notin-empty-values", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": []}]}}}), f"{SEL}.matchExpressions[0].values: must not be empty for operator NotIn"),
    ("exists-with-values", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]}}}), f"{SEL}.matchExpressions[0].values: must be empty for operator Exists"),
    ("values-is-string", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "In", "values": "a"}]}}}), f"{SEL}.matchExpressions[0].values: expected a list, got a string"),
    ("value-is-int", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "In", "values": ["a", 1]}]}}}), f"{SEL}.matchExpressions[0].values[1]: expected a string, got an integer"),
    ("expression-unknown-field", cfg({"encryption": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "value": []}]}}}), f"{SEL}.matchExpressions[0].value: unknown field"),
]
# fmt: on


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(*c[1:], id=c[0]) for c in GOOD])
def test_decodes(obj: Any, expected: MeshConfig) -> None:
    assert decode_meshconfig(obj) == expected


@pytest.mark.parametrize(("obj", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_rejects_with_one_line_naming_the_field(obj: Any, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        decode_meshconfig(obj)
    assert str(exc.value) == message


PQ_DEFAULTS = {"postQuantum": "Disabled", "pskRotationInterval": "2m"}


def test_encode_writes_every_field() -> None:
    obj = encode_meshconfig(MeshConfig())
    assert obj == {
        "apiVersion": "meshd.io/v1alpha1",
        "kind": "MeshConfig",
        "metadata": {"name": "default", "generation": 0},
        "spec": {
            "encryption": {"mode": "Enabled", "nodeSelector": {}},
            "fallback": "VXLAN",
            "wireguard": {"listenPort": 51820, "mtu": 0, "persistentKeepalive": 0} | PQ_DEFAULTS,
            "vxlan": {"vni": 4096, "port": 4789, "mtu": 0},
        },
    }


def test_encode_full_matches_what_a_user_writes() -> None:
    expected = copy.deepcopy(FULL_OBJECT)
    expected["metadata"] = {"name": "default", "generation": 4}
    del expected["status"]
    assert encode_meshconfig(FULL) == expected


@given(mesh_configs())
def test_round_trip(config: MeshConfig) -> None:
    assert decode_meshconfig(encode_meshconfig(config)) == config


def _config_error_or_config(obj: Any) -> None:
    try:
        result = decode_meshconfig(obj)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) <= 300
        assert ": " in message, "the message starts with the field path"
    else:
        assert isinstance(result, MeshConfig)


@given(json_values())
def test_any_json_gives_config_or_config_error(obj: object) -> None:
    _config_error_or_config(obj)


@given(json_values(max_leaves=10).map(cfg))
def test_any_spec_gives_config_or_config_error(obj: object) -> None:
    _config_error_or_config(obj)


@st.composite
def one_value_replaced(draw: st.DrawFn) -> dict[str, Any]:
    """A valid full object with one field, at any depth, replaced by arbitrary JSON."""
    obj = encode_meshconfig(draw(mesh_configs()))
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            slots.append((node, key))
            walk(child)

    walk(obj)
    parent, key = draw(st.sampled_from(slots))
    parent[key] = draw(json_values(max_leaves=5))
    return obj


@given(one_value_replaced())
def test_almost_right_objects_give_config_or_config_error(obj: dict[str, Any]) -> None:
    _config_error_or_config(obj)
