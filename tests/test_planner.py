"""The planner, table-driven: which transport each pair gets in each mode, which routes, peers, fallback
entries and devices exist. The local node is node-a unless a case says otherwise. Conflicts between
nodes (duplicate keys and MACs, pod CIDR clashes, invalid records) are in test_planner_conflicts.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

import pytest

from meshd.core.model import (
    EncryptionMode,
    Endpoint,
    Fallback,
    LabelSelector,
    MeshConfig,
    Node,
    Snapshot,
    Transport,
    VxlanSettings,
    WireGuardSettings,
)
from meshd.core.planner import plan
from meshd.core.state import NeighborEntry, Route
from tests.planner_cases import IPIP, NONE, VX, WG, Case, check, desired_for, key, local_of, node, reason

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
    "own-record-in-snapshot-is-never-a-peer": Case(
        (node(1, cidrs=("198.19.99.0/24",)), node(2)),
        {"node-b": WG},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    check(case)


REASONS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "required": ("required-node-without-key-gets-no-route", "node-c", lambda r: "encryption required" in r),
    "names-the-peer": ("required-node-without-key-gets-no-route", "node-c", lambda r: "node-c" in r),
    "fallback": ("enabled-node-without-key-falls-back", "node-c", lambda r: "VXLAN" in r),
    "selector": ("selector-two-pools-seen-from-pool-x", "node-c", lambda r: "nodeSelector" in r),
    "disabled": ("disabled-everything-vxlan-peers-on-standby", "node-b", lambda r: "disabled" in r),
}


@pytest.mark.parametrize(("case_id", "peer", "check_reason"), REASONS.values(), ids=REASONS.keys())
def test_reasons_explain_the_decision(case_id: str, peer: str, check_reason: Callable[[str], bool]) -> None:
    assert check_reason(reason(CASES[case_id], peer))


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
