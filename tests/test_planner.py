"""The planner, table-driven: which transport each pair gets, which routes, peers and fallback entries
exist, and which problems are reported. The local node is always node-a."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pytest

from keys.values import PublicKey
from meshd.model import (
    EncryptionMode,
    Endpoint,
    Fallback,
    InvalidNode,
    LabelSelector,
    LocalNode,
    MeshConfig,
    Node,
    NodeRecord,
    Snapshot,
    Transport,
    VxlanSettings,
    WireGuardSettings,
)
from meshd.planner import plan
from meshd.state import DesiredState, NeighborEntry, Route

WG, VX, IPIP, NONE = Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP, Transport.NONE
ALL = frozenset({WG, VX})


def key(i: int) -> PublicKey:
    return PublicKey(bytes([i]) * 32)


def node(
    i: int,
    *,
    caps: Iterable[Transport] = ALL,
    with_key: bool = True,
    cidrs: tuple[str, ...] | None = None,
    labels: dict[str, str] | None = None,
    underlay: str | None = None,
    key_of: int | None = None,
) -> Node:
    """node-<letter i>: underlay 198.18.0.i, pods 198.19.i.0/24, key i, MAC 02:00:00:00:00:i."""
    name = f"node-{'abcdefgh'[i - 1]}"
    under = ipaddress.ip_address(underlay or f"198.18.0.{i}")
    return Node(
        name=name,
        underlay_ip=under,
        pod_cidrs=tuple(ipaddress.ip_network(c) for c in (cidrs or (f"198.19.{i}.0/24",))),
        labels=tuple(sorted((labels or {}).items())),
        public_key=key(key_of or i) if with_key else None,
        endpoint=Endpoint(under, 51820),
        vxlan_mac=f"02:00:00:00:00:{i:02x}",
        capabilities=frozenset(caps),
    )


def local_of(n: Node, **kw: object) -> LocalNode:
    return LocalNode(n, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    remotes: tuple[NodeRecord, ...]
    transports: dict[str, Transport]
    routes: dict[str, str]  # pod CIDR -> device
    peers: set[str]  # nodes with a WireGuard peer (in use or standby)
    fallback_nodes: set[str]  # nodes with FDB entries (in use or standby)
    config: MeshConfig = field(default_factory=MeshConfig)
    me: Node = field(default_factory=lambda: node(1))
    local: dict[str, object] = field(default_factory=dict)
    problems: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


REQUIRED = MeshConfig(mode=EncryptionMode.REQUIRED)
POOL_X = LabelSelector(match_labels=(("pool", "x"),))
IPIP_CFG = MeshConfig(fallback=Fallback.IPIP)
X, Y = {"pool": "x"}, {"pool": "y"}

CASES = {
    "enabled-all-wireguard": Case(
        (node(2), node(3)),
        {"node-b": WG, "node-c": WG},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd0"},
        peers={"node-b", "node-c"},
        fallback_nodes={"node-b", "node-c"},
    ),
    "enabled-node-without-key-falls-back": Case(
        (node(2), node(3, with_key=False)),
        {"node-b": WG, "node-c": VX},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-vxlan"},
        peers={"node-b"},
        fallback_nodes={"node-b", "node-c"},
    ),
    "disabled-everything-vxlan-peers-on-standby": Case(
        (node(2), node(3)),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers={"node-b", "node-c"},
        fallback_nodes={"node-b", "node-c"},
        config=MeshConfig(mode=EncryptionMode.DISABLED),
    ),
    "required-node-without-key-gets-no-route": Case(
        (node(2), node(3, with_key=False)),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes=set(),
        config=REQUIRED,
        problems={("encryption-unavailable", ("node-c",))},
    ),
    "required-node-without-wireguard-capability": Case(
        (node(2, caps={VX}),),
        {"node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        config=REQUIRED,
        problems={("encryption-unavailable", ("node-b",))},
    ),
    "required-selector-scopes-the-requirement": Case(
        (node(2, labels=X, with_key=False), node(3, labels=Y, with_key=False)),
        {"node-b": NONE, "node-c": VX},
        {"198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-c"},
        config=MeshConfig(mode=EncryptionMode.REQUIRED, node_selector=POOL_X),
        me=node(1, labels=X),
        problems={("encryption-unavailable", ("node-b",))},
    ),
    "selector-two-pools-seen-from-pool-x": Case(
        (node(2, labels=X), node(3, labels=Y), node(4, labels=Y)),
        {"node-b": WG, "node-c": VX, "node-d": VX},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-vxlan", "198.19.4.0/24": "meshd-vxlan"},
        peers={"node-b", "node-c", "node-d"},
        fallback_nodes={"node-b", "node-c", "node-d"},
        config=MeshConfig(node_selector=POOL_X),
        me=node(1, labels=X),
    ),
    "selector-two-pools-seen-from-pool-y": Case(
        (node(2, labels=X), node(3, labels=Y), node(4, labels=Y)),
        {"node-b": VX, "node-c": VX, "node-d": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan", "198.19.4.0/24": "meshd-vxlan"},
        peers={"node-b", "node-c", "node-d"},
        fallback_nodes={"node-b", "node-c", "node-d"},
        config=MeshConfig(node_selector=POOL_X),
        me=node(1, labels=Y),
    ),
    "fallback-none": Case(
        (node(2), node(3, caps={VX})),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes=set(),
        config=MeshConfig(fallback=Fallback.NONE),
        problems={("no-transport", ("node-c",))},
    ),
    "ipip-available": Case(
        (node(2, caps={WG, Transport.IPIP}), node(3, caps={Transport.IPIP})),
        {"node-b": WG, "node-c": IPIP},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-ipip"},
        peers={"node-b"},
        fallback_nodes=set(),
        config=IPIP_CFG,
        me=node(1, caps={WG, Transport.IPIP}),
        local={"ipip_available": True},
    ),
    "ipip-unavailable-locally": Case(
        (node(2, caps={Transport.IPIP}),),
        {"node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        config=IPIP_CFG,
        me=node(1, caps={WG, Transport.IPIP}),
        problems={("no-transport", ("node-b",))},
    ),
    "ipip-carries-no-ipv6-cidrs": Case(
        (node(2, caps={Transport.IPIP}, cidrs=("198.19.2.0/24", "2001:db8:2::/64")),),
        {"node-b": IPIP},
        {"198.19.2.0/24": "meshd-ipip"},
        peers=set(),
        fallback_nodes=set(),
        config=IPIP_CFG,
        me=node(1, caps={WG, Transport.IPIP}),
        local={"ipip_available": True},
        problems={("ipip-ipv6-cidr", ("node-b",))},
    ),
    "ipip-needs-ipv4-underlays": Case(
        (node(2, caps={Transport.IPIP}, underlay="2001:db8::2"),),
        {"node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        config=IPIP_CFG,
        me=node(1, caps={WG, Transport.IPIP}),
        local={"ipip_available": True},
        problems={("no-transport", ("node-b",))},
    ),
    "duplicate-keys-between-remotes": Case(
        (node(2), node(3, key_of=2), node(4)),
        {"node-b": VX, "node-c": VX, "node-d": WG},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan", "198.19.4.0/24": "meshd0"},
        peers={"node-d"},
        fallback_nodes={"node-b", "node-c", "node-d"},
        problems={("duplicate-public-key", ("node-b", "node-c"))},
    ),
    "duplicate-key-with-local-disables-our-wireguard": Case(
        (node(2, key_of=1), node(3)),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        problems={("duplicate-public-key", ("node-a", "node-b"))},
    ),
    "duplicate-vxlan-macs-get-no-vxlan": Case(
        (node(2, with_key=False), replace(node(3, with_key=False), vxlan_mac="02:00:00:00:00:02"), node(4)),
        {"node-b": NONE, "node-c": NONE, "node-d": WG},
        {"198.19.4.0/24": "meshd0"},
        peers={"node-d"},
        fallback_nodes={"node-d"},
        problems={
            ("duplicate-vxlan-mac", ("node-b", "node-c")),
            ("no-transport", ("node-b",)),
            ("no-transport", ("node-c",)),
        },
    ),
    "cidr-overlap-with-local": Case(
        (node(2, cidrs=("198.19.1.128/25",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={("pod-cidr-conflict", ("node-a", "node-b"))},
    ),
    "cidr-overlap-between-remotes-greater-name-left-out": Case(
        (node(3, cidrs=("198.19.2.0/23",)), node(2)),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={("pod-cidr-conflict", ("node-b", "node-c"))},
    ),
    "local-is-the-claimant-and-left-out": Case(
        (node(2, cidrs=("198.19.3.0/24",)), node(1, cidrs=("198.19.9.0/24",))),
        {"node-a": NONE, "node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(3),
        problems={("pod-cidr-conflict", ("node-b", "node-c"))},
    ),
    "invalid-records-are-reported-not-peers": Case(
        (node(2), InvalidNode("node-z", "bad-public-key", "public key is not valid base64")),
        {"node-b": WG},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={("invalid-node", ("node-z",))},
    ),
    "own-record-in-snapshot-is-never-a-peer": Case(
        (node(1, cidrs=("198.19.99.0/24",)), node(2)),
        {"node-b": WG},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
    ),
    "dual-stack-pod-cidrs": Case(
        (
            node(2, cidrs=("198.19.2.0/24", "2001:db8:2::/64")),
            node(3, with_key=False, cidrs=("2001:db8:3::/64",)),
        ),
        {"node-b": WG, "node-c": VX},
        {"198.19.2.0/24": "meshd0", "2001:db8:2::/64": "meshd0", "2001:db8:3::/64": "meshd-vxlan"},
        peers={"node-b"},
        fallback_nodes={"node-b", "node-c"},
    ),
    "local-without-wireguard-backend": Case(
        (node(2), node(3)),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        local={"wireguard_available": False},
    ),
    "remote-without-vxlan-mac-gets-no-fallback": Case(
        (replace(node(2, with_key=False), vxlan_mac=None),),
        {"node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        problems={("no-transport", ("node-b",))},
    ),
}


def desired_for(case: Case) -> DesiredState:
    return plan(Snapshot.of(case.remotes, case.config), local_of(case.me, **case.local))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    d = desired_for(case)
    assert {p.node: p.transport for p in d.pairs} == case.transports
    assert {str(r.dst): r.dev for r in d.routes} == case.routes
    assert {p.node for p in d.peers} == case.peers
    by_mac = {n.vxlan_mac: n.name for n in case.remotes if isinstance(n, Node)}
    assert {by_mac[e.mac] for e in d.fdb} == case.fallback_nodes
    assert {(p.kind, p.nodes) for p in d.problems} == case.problems
    assert all(p.reason for p in d.pairs)


def _reason(case_id: str, peer: str) -> str:
    return next(p.reason for p in desired_for(CASES[case_id]).pairs if p.node == peer)


REASONS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "required": ("required-node-without-key-gets-no-route", "node-c", lambda r: "encryption required" in r),
    "names-the-peer": ("required-node-without-key-gets-no-route", "node-c", lambda r: "node-c" in r),
    "fallback": ("enabled-node-without-key-falls-back", "node-c", lambda r: "VXLAN" in r),
    "selector": ("selector-two-pools-seen-from-pool-x", "node-c", lambda r: "nodeSelector" in r),
    "conflict": ("cidr-overlap-with-local", "node-b", lambda r: "198.19.1.128/25" in r),
    "disabled": ("disabled-everything-vxlan-peers-on-standby", "node-b", lambda r: "disabled" in r),
}


@pytest.mark.parametrize(("case_id", "peer", "check"), REASONS.values(), ids=REASONS.keys())
def test_reasons_explain_the_decision(case_id: str, peer: str, check: Callable[[str], bool]) -> None:
    assert check(_reason(case_id, peer))


def test_route_shapes_per_transport() -> None:
    d = desired_for(CASES["ipip-available"])
    assert Route(ipaddress.ip_network("198.19.2.0/24"), "meshd0") in d.routes
    ipip_route = Route(
        ipaddress.ip_network("198.19.3.0/24"),
        "meshd-ipip",
        via=ipaddress.ip_address("198.18.0.3"),
        onlink=True,
    )
    assert ipip_route in d.routes
    v = desired_for(CASES["dual-stack-pod-cidrs"])
    gw6 = ipaddress.ip_address("2001:db8:3::")
    assert Route(ipaddress.ip_network("2001:db8:3::/64"), "meshd-vxlan", via=gw6, onlink=True) in v.routes
    assert NeighborEntry("meshd-vxlan", gw6, "02:00:00:00:00:03") in v.neighbors


def test_peer_spec_pins_endpoint_and_allows_pod_cidrs() -> None:
    cfg = MeshConfig(wireguard=WireGuardSettings(persistent_keepalive=25))
    d = plan(Snapshot.of([node(2, cidrs=("198.19.2.0/24", "2001:db8:2::/64"))], cfg), local_of(node(1)))
    (peer,) = d.peers
    assert peer.public_key == key(2) and peer.node == "node-b"
    assert peer.endpoint == Endpoint(ipaddress.ip_address("198.18.0.2"), 51820)
    assert peer.allowed_ips == {
        ipaddress.ip_network("198.19.2.0/24"),
        ipaddress.ip_network("2001:db8:2::/64"),
    }
    assert peer.persistent_keepalive == 25


def test_peers_sorted_by_public_key() -> None:
    d = plan(Snapshot.of([node(4), node(2), node(3)]), local_of(node(1)))
    assert [p.public_key for p in d.peers] == sorted(p.public_key for p in d.peers)


DEVICE_MTUS = {
    "ipv4-underlay": (node(1), {}, MeshConfig(), (1420, 1450)),
    "ipv6-underlay": (node(1, underlay="2001:db8::1"), {}, MeshConfig(), (1420, 1430)),
    "jumbo-underlay": (node(1), {"underlay_mtu": 9000}, MeshConfig(), (8920, 8950)),
    "configured": (
        node(1),
        {},
        MeshConfig(wireguard=WireGuardSettings(mtu=1300), vxlan=VxlanSettings(mtu=1400)),
        (1300, 1400),
    ),
}


@pytest.mark.parametrize(("me", "local", "cfg", "mtus"), DEVICE_MTUS.values(), ids=DEVICE_MTUS.keys())
def test_device_mtus(me: Node, local: dict[str, object], cfg: MeshConfig, mtus: tuple[int, int]) -> None:
    d = plan(Snapshot.of([], cfg), local_of(me, **local))
    assert d.wireguard is not None and d.vxlan is not None
    assert (d.wireguard.mtu, d.vxlan.mtu) == mtus


def test_devices_and_addresses() -> None:
    me = node(1, cidrs=("198.19.1.0/24", "2001:db8:1::/64"))
    cfg = MeshConfig(wireguard=WireGuardSettings(listen_port=51999), vxlan=VxlanSettings(vni=7, port=8472))
    d = plan(Snapshot.of([], cfg), local_of(me))
    want = {ipaddress.ip_interface("198.19.1.0/32"), ipaddress.ip_interface("2001:db8:1::/128")}
    assert d.wireguard is not None and d.vxlan is not None
    assert (d.wireguard.name, d.wireguard.listen_port, d.wireguard.public_key) == ("meshd0", 51999, key(1))
    assert (d.vxlan.vni, d.vxlan.port, d.vxlan.local) == (7, 8472, me.underlay_ip)
    assert d.wireguard.addresses == want == d.vxlan.addresses
    assert d.ipip is None


DEVICES = {
    "no-wireguard-backend": (node(1), {"wireguard_available": False}, MeshConfig(), (False, True, False)),
    "no-key": (node(1, with_key=False), {}, MeshConfig(), (False, True, False)),
    "no-vxlan-capability": (node(1, caps={WG}), {}, MeshConfig(), (True, False, False)),
    "fallback-none": (node(1), {}, MeshConfig(fallback=Fallback.NONE), (True, False, False)),
    "ipip": (node(1), {"ipip_available": True}, IPIP_CFG, (True, False, True)),
    "ipip-unavailable": (node(1), {}, IPIP_CFG, (True, False, False)),
}


@pytest.mark.parametrize(("me", "local", "cfg", "present"), DEVICES.values(), ids=DEVICES.keys())
def test_which_devices_exist(
    me: Node, local: dict[str, object], cfg: MeshConfig, present: tuple[bool, bool, bool]
) -> None:
    d = plan(Snapshot.of([node(2)], cfg), local_of(me, **local))
    assert (d.wireguard is not None, d.vxlan is not None, d.ipip is not None) == present
