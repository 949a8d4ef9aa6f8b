"""Hypothesis strategies for domain values, shared by every test that needs generated nodes or configs.

- `nodes()`: one valid Node (pod CIDRs in 198.19.0.0/16 and/or 2001:db8:19::/48, underlay in
  198.18.0.0/16 or 2001:db8:18::/64).
- `valid_clusters()`: lists of Nodes with unique names, unique public keys, unique underlay addresses
  and pairwise disjoint pod CIDRs (node i owns the slot 198.19.S.0/24 and 2001:db8:19:S::/64).
- `mesh_configs()`, `label_selectors()`, `labels()`: MeshConfig values that the codec round-trips.
- `json_values()`: anything JSON can hold, for "never raises" properties.
Labels and selectors draw from a small vocabulary, so that selectors actually match some nodes.
"""

from __future__ import annotations

import ipaddress
from typing import TypeVar

from hypothesis import strategies as st

from keys.values import PublicKey
from meshd.core.model import (
    EncryptionMode,
    Endpoint,
    Fallback,
    IPAddress,
    IPNetwork,
    LabelRequirement,
    Labels,
    LabelSelector,
    MeshConfig,
    Node,
    Transport,
    VxlanSettings,
    WireGuardSettings,
)

T = TypeVar("T")

UNDERLAY_V4 = ipaddress.IPv4Network("198.18.0.0/16")
UNDERLAY_V6 = ipaddress.IPv6Network("2001:db8:18::/64")
PODS_V4 = ipaddress.IPv4Network("198.19.0.0/16")
PODS_V6 = ipaddress.IPv6Network("2001:db8:19::/48")
SLOTS = 256  # node slots: 198.19.S.0/24 and 2001:db8:19:S::/64
HOSTS = 65534  # underlay host numbers 1..HOSTS

LABEL_KEYS = ("pool", "zone", "tier", "meshd.io/encrypt")
LABEL_VALUES = ("a", "b", "c", "")
CAPABLE = (Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP)

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?(\.[a-z0-9]{1,6})?", fullmatch=True)
public_keys = st.binary(min_size=32, max_size=32).map(PublicKey)
capabilities = st.frozensets(st.sampled_from(CAPABLE))
generations = st.none() | st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def vxlan_macs(draw: st.DrawFn) -> str:
    """Lower-case unicast, non-zero MACs."""
    first = draw(st.integers(0, 255)) & 0xFE
    rest = draw(st.binary(min_size=5, max_size=5))
    octets = bytes([first]) + rest
    if not any(octets):
        octets = b"\x02" + rest
    return ":".join(f"{b:02x}" for b in octets)


def labels() -> st.SearchStrategy[Labels]:
    return st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=3).map(
        lambda d: tuple(sorted(d.items()))
    )


def underlay_ip(host: int, version: int) -> IPAddress:
    net = UNDERLAY_V4 if version == 4 else UNDERLAY_V6
    return net.network_address + host


@st.composite
def pod_cidrs(draw: st.DrawFn, slot: int) -> tuple[IPNetwork, ...]:
    """One or two networks (at most one per family) inside the slot's /24 and /64; order drawn too."""
    v4_base = ipaddress.IPv4Network(f"198.19.{slot}.0/24")
    v6_base = ipaddress.IPv6Network(f"2001:db8:19:{slot:x}::/64")
    out: list[IPNetwork] = []
    families = draw(st.sampled_from([(4,), (6,), (4, 6), (6, 4)]))
    for family in families:
        base: IPNetwork = v4_base if family == 4 else v6_base
        prefix = draw(st.integers(base.prefixlen, base.max_prefixlen))
        index = draw(st.integers(0, 2 ** (prefix - base.prefixlen) - 1))
        size = 2 ** (base.max_prefixlen - prefix)
        out.append(ipaddress.ip_network(f"{base.network_address + index * size}/{prefix}"))
    return tuple(out)


@st.composite
def _node(draw: st.DrawFn, *, name: str, slot: int, host: int, key: PublicKey | None) -> Node:
    underlay = underlay_ip(host, draw(st.sampled_from((4, 6))))
    port = draw(st.integers(1, 65535))
    return Node(
        name=name,
        underlay_ip=underlay,
        pod_cidrs=draw(pod_cidrs(slot)),
        labels=draw(labels()),
        public_key=key,
        endpoint=draw(st.none() | st.just(Endpoint(underlay, port))),
        vxlan_mac=draw(st.none() | vxlan_macs()),
        capabilities=draw(capabilities),
        observed_generation=draw(generations),
    )


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    """One valid Node: any combination of the optional fields."""
    return draw(
        _node(
            name=draw(names),
            slot=draw(st.integers(0, SLOTS - 1)),
            host=draw(st.integers(1, HOSTS)),
            key=draw(st.none() | public_keys),
        )
    )


@st.composite
def valid_clusters(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 8) -> list[Node]:
    """Nodes with unique names, keys and underlay addresses, and disjoint pod CIDRs."""
    size = draw(st.integers(min_size, max_size))

    def distinct(elements: st.SearchStrategy[T]) -> list[T]:
        return draw(st.lists(elements, min_size=size, max_size=size, unique=True))

    node_names = distinct(names)
    slots = distinct(st.integers(0, SLOTS - 1))
    hosts = distinct(st.integers(1, HOSTS))
    keys = distinct(public_keys)
    with_key = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return [
        draw(_node(name=n, slot=s, host=h, key=k if w else None))
        for n, s, h, k, w in zip(node_names, slots, hosts, keys, with_key, strict=True)
    ]


def label_selectors() -> st.SearchStrategy[LabelSelector]:
    with_values = st.builds(
        LabelRequirement,
        key=st.sampled_from(LABEL_KEYS),
        operator=st.sampled_from(("In", "NotIn")),
        values=st.frozensets(st.sampled_from(LABEL_VALUES), min_size=1),
    )
    without = st.builds(
        LabelRequirement,
        key=st.sampled_from(LABEL_KEYS),
        operator=st.sampled_from(("Exists", "DoesNotExist")),
    )
    return st.builds(
        LabelSelector,
        match_labels=labels(),
        match_expressions=st.lists(with_values | without, max_size=3).map(tuple),
    )


_mtus = st.just(0) | st.integers(1280, 9000)


def mesh_configs() -> st.SearchStrategy[MeshConfig]:
    return st.builds(
        MeshConfig,
        mode=st.sampled_from(EncryptionMode),
        node_selector=st.just(LabelSelector()) | label_selectors(),
        fallback=st.sampled_from(Fallback),
        wireguard=st.builds(
            WireGuardSettings,
            listen_port=st.integers(1, 65535),
            mtu=_mtus,
            persistent_keepalive=st.integers(0, 65535),
            post_quantum=st.booleans(),
            psk_rotation_interval=st.integers(10, 86400).map(float),
        ),
        vxlan=st.builds(VxlanSettings, vni=st.integers(1, 2**24 - 1), port=st.integers(1, 65535), mtu=_mtus),
        generation=st.integers(0, 2**63 - 1),
    )


def json_values(max_leaves: int = 30) -> st.SearchStrategy[object]:
    """Anything JSON can hold: null, booleans, integers (big ones too), floats, strings, lists, objects."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
        max_leaves=max_leaves,
    )


# "Almost right" annotation values: a valid value with a few characters inserted, replaced or deleted,
# or text over an alphabet near the valid one (digits, hex, separators, look-alike Unicode digits).
VALID_ANNOTATIONS = {
    "meshd.io/public-key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "meshd.io/endpoint": "[2001:db8:18::1]:51820",
    "meshd.io/vxlan-mac": "02:ab:cd:00:00:01",
    "meshd.io/capabilities": "vxlan,wireguard",
    "meshd.io/observed-generation": "12",
}
NEAR = "0123456789abcdefABCDEF:[]./+=, -%\n\x00\u00b2\u0663"


@st.composite
def almost_right(draw: st.DrawFn, valid: str) -> str:
    text = valid
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(NEAR))
        op = draw(st.sampled_from(("insert", "replace", "delete")))
        if op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "replace":
            text = text[:i] + char + text[i + 1 :]
        else:
            text = text[:i] + text[i + 1 :]
    return draw(st.just(text) | st.text(NEAR, max_size=60))


@st.composite
def fuzzed_annotations(draw: st.DrawFn) -> dict[str, str]:
    """Some of the `meshd.io/*` annotations, each almost right."""
    keys = draw(st.lists(st.sampled_from(sorted(VALID_ANNOTATIONS)), min_size=1, unique=True))
    return {k: draw(almost_right(VALID_ANNOTATIONS[k])) for k in keys}
