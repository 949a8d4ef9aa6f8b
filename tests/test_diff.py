"""diff(): minimal per-object changes in make-before-break order, checked against the fake kernel."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from meshd.core import actions as a
from meshd.core.diff import diff
from meshd.core.model import (
    EncryptionMode,
    Endpoint,
    LabelSelector,
    LocalNode,
    MeshConfig,
    Node,
    Snapshot,
    WireGuardSettings,
)
from meshd.core.planner import plan
from meshd.core.state import ActualState, DesiredState, PeerSpec
from tests.fakes import FakeDataplane
from tests.planner_cases import key, node

POOL_X = LabelSelector(match_labels=(("pool", "x"),))
X = {"pool": "x"}
ME = node(1, labels=X)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def planned(*remotes: Node, config: MeshConfig | None = None) -> DesiredState:
    return plan(Snapshot.of(remotes, config), LocalNode(ME))


def converged(desired: DesiredState) -> FakeDataplane:
    fake = FakeDataplane()
    fake.apply(diff(desired, fake.observe()))
    assert diff(desired, fake.observe()) == ()
    return fake


def kinds(actions: tuple[a.Action, ...]) -> list[str]:
    return [type(x).__name__ for x in actions]


def peer_of(desired: DesiredState, name: str) -> PeerSpec:
    return next(p for p in desired.peers if p.node == name)


PEER_CHANGES = {
    "allowed-ips-only": (
        {"allowed_ips": frozenset({net("198.19.2.0/24"), net("198.19.20.0/24")})},
        {"allowed_ips": frozenset({net("198.19.2.0/24"), net("198.19.20.0/24")})},
    ),
    "keepalive-only": ({"persistent_keepalive": 25}, {"persistent_keepalive": 25}),
    "endpoint-only": (
        {"endpoint": Endpoint(ipaddress.ip_address("198.18.1.2"), 51820)},
        {"endpoint": Endpoint(ipaddress.ip_address("198.18.1.2"), 51820)},
    ),
    "node-name-is-not-drift": ({"node": "renamed"}, None),
    "unpinned-endpoint-is-not-drift": ({"endpoint": None}, None),
}


@pytest.mark.parametrize(("change", "update"), PEER_CHANGES.values(), ids=PEER_CHANGES.keys())
def test_minimal_per_peer_update(change: dict[str, object], update: dict[str, object] | None) -> None:
    before = planned(node(2), node(3), node(4))
    fake = converged(before)
    b = peer_of(before, "node-b")
    after = replace(before, peers=tuple(replace(p, **change) if p is b else p for p in before.peers))  # type: ignore[arg-type]
    actions = diff(after, fake.observe())
    if update is None:
        assert actions == ()
        return
    assert actions == (a.UpdatePeer(key(2), node=change.get("node", "node-b"), **update),)  # type: ignore[arg-type]
    fake.apply(actions)
    assert diff(after, fake.observe()) == ()


def test_roamed_endpoint_is_drift_only_when_pinned() -> None:
    pinned = planned(node(2))
    fake = converged(pinned)
    fake.learn_endpoint(key(2), Endpoint(ipaddress.ip_address("198.18.7.7"), 40000))
    unpinned = replace(pinned, peers=tuple(replace(p, endpoint=None) for p in pinned.peers))
    assert diff(unpinned, fake.observe()) == ()
    assert diff(pinned, fake.observe()) == (a.UpdatePeer(key(2), endpoint=node(2).endpoint, node="node-b"),)


def test_fewer_peers_removes_only_what_is_no_longer_wanted() -> None:
    fake = converged(planned(node(2), node(3, with_key=False)))
    fewer = planned(node(4))
    pruned = diff(fewer, fake.observe())
    assert kinds(pruned) == [
        "ReplaceRoute",  # node-d's tunnel route, new: before its peer (see the test below)
        "AddPeer",
        "AddNeighbor",
        "AddFdb",
        "RemoveRoute",
        "RemoveRoute",
        "RemoveFdb",
        "RemoveFdb",
        "RemoveNeighbor",
        "RemoveNeighbor",
        "RemovePeer",
    ]
    fake.apply(pruned)
    assert diff(fewer, fake.observe()) == ()


def test_a_new_peers_tunnel_route_comes_before_its_peer() -> None:
    """Its queued packets arrive the moment its entry is in; our answers must find the tunnel, never the
    default route (in clear). A route into the tunnel before its peer only drops what nothing carried."""
    fake = converged(planned(node(2)))
    more = planned(node(2), node(3))
    actions = diff(more, fake.observe())
    routes = [(i, x) for i, x in enumerate(actions) if isinstance(x, a.ReplaceRoute)]
    new_peer = next(i for i, x in enumerate(actions) if isinstance(x, a.AddPeer))
    assert [x.route.via for _, x in routes] == [None] and routes[0][0] < new_peer, kinds(actions)
    fake.apply(actions)
    assert diff(more, fake.observe()) == ()


def test_unwanted_devices_go_and_take_their_entries_along() -> None:
    fake = converged(planned(node(2), node(3)))
    teardown = diff(DesiredState(), fake.observe())
    assert kinds(teardown) == ["RemoveRoute", "RemoveRoute", "DeleteDevice", "DeleteDevice"]
    fake.apply(teardown)
    assert fake.observe() == ActualState()


def test_move_between_transports_is_make_before_break() -> None:
    """Required mode keeps no unencrypted standby: a pair leaving the selector gets its VXLAN entries
    before its route moves, keeps its WireGuard peer on standby, and comes back route-first. Its Required
    guard goes only after the fallback route is in place, and comes back before anything else."""
    cfg = MeshConfig(mode=EncryptionMode.REQUIRED, node_selector=POOL_X)
    encrypted = planned(node(2, labels=X), config=cfg)
    assert encrypted.guards == frozenset(node(2).pod_cidrs)
    fake = converged(encrypted)
    clear = planned(node(2, labels={"pool": "y"}), config=cfg)
    out = diff(clear, fake.observe())
    assert kinds(out) == ["AddNeighbor", "AddFdb", "ReplaceRoute", "RemoveGuard"]
    assert out[-2] == a.ReplaceRoute(next(iter(clear.routes)))
    fake.apply(out)
    assert diff(clear, fake.observe()) == ()
    assert [p.public_key for p in fake.observe().wireguard.peers] == [key(2)]  # type: ignore[union-attr]
    back = diff(encrypted, fake.observe())
    assert kinds(back) == ["AddGuard", "ReplaceRoute", "RemoveFdb", "RemoveNeighbor"]
    fake.apply(back)
    assert diff(encrypted, fake.observe()) == ()


def test_toggle_enabled_to_disabled_moves_only_routes() -> None:
    enabled = planned(node(2), node(3))
    fake = converged(enabled)
    disabled = planned(node(2), node(3), config=MeshConfig(mode=EncryptionMode.DISABLED))
    assert kinds(diff(disabled, fake.observe())) == ["ReplaceRoute", "ReplaceRoute"]


def test_vxlan_entries_added_neighbor_fdb_route_and_removed_in_reverse() -> None:
    cfg = MeshConfig(mode=EncryptionMode.REQUIRED, node_selector=POOL_X)
    fake = converged(planned(config=cfg))
    with_c = planned(node(3, with_key=False), config=cfg)
    add = diff(with_c, fake.observe())
    assert kinds(add) == ["AddNeighbor", "AddFdb", "ReplaceRoute"]
    fake.apply(add)
    assert kinds(diff(planned(config=cfg), fake.observe())) == [
        "RemoveRoute",
        "RemoveFdb",
        "RemoveNeighbor",
    ]


def test_vni_change_recreates_the_device_and_restores_its_entries() -> None:
    before = planned(node(2, with_key=False), node(3, with_key=False))
    fake = converged(before)
    assert before.vxlan is not None
    after = replace(before, vxlan=replace(before.vxlan, vni=4097))
    actions = diff(after, fake.observe())
    assert actions[0] == a.DeleteDevice("meshd-vxlan", actions[0].reason)  # type: ignore[union-attr]
    assert kinds(actions) == [
        "DeleteDevice",
        "CreateVxlanDevice",
        "AddAddress",
        "AddNeighbor",
        "AddNeighbor",
        "AddFdb",
        "AddFdb",
        "ReplaceRoute",
        "ReplaceRoute",
    ]
    fake.apply(actions)
    assert fake.observe().vxlan.vni == 4097  # type: ignore[union-attr]
    assert diff(after, fake.observe()) == ()


def test_changed_mac_replaces_the_neighbour_in_place() -> None:
    fake = converged(planned(node(2, with_key=False)))
    moved = planned(replace(node(2, with_key=False), vxlan_mac="02:00:00:00:00:99"))
    actions = diff(moved, fake.observe())
    assert kinds(actions) == ["AddNeighbor", "AddFdb", "RemoveFdb"]
    fake.apply(actions)
    assert diff(moved, fake.observe()) == ()


def test_moved_underlay_replaces_the_fdb_entry_in_place() -> None:
    fake = converged(planned(node(2, with_key=False)))
    moved = planned(node(2, with_key=False, underlay="198.18.9.2"))
    actions = diff(moved, fake.observe())
    assert kinds(actions) == ["AddFdb"]
    fake.apply(actions)
    assert diff(moved, fake.observe()) == ()


def test_wireguard_device_reconfigured_in_place() -> None:
    before = planned(node(2))
    fake = converged(before)
    assert before.wireguard is not None
    after = replace(
        before,
        wireguard=replace(
            before.wireguard,
            listen_port=51999,
            mtu=1380,
            addresses=frozenset({ipaddress.ip_interface("2001:db8:1::/128")}),
        ),
    )
    actions = diff(after, fake.observe())
    assert kinds(actions) == ["ConfigureWireGuardDevice", "SetLinkMtu", "AddAddress", "RemoveAddress"]
    fake.apply(actions)
    assert diff(after, fake.observe()) == ()
    assert [p.public_key for p in fake.observe().wireguard.peers] == [key(2)]  # type: ignore[union-attr]


def test_fake_kernel_refuses_what_the_kernel_refuses() -> None:
    desired = planned(node(2))
    fake = converged(desired)
    assert desired.wireguard is not None
    route = next(iter(desired.routes))
    with pytest.raises(FileExistsError):
        fake.apply([a.CreateWireGuardDevice(desired.wireguard)])
    fake.apply([a.RemoveRoute(route)])
    with pytest.raises(OSError, match="route"):
        fake.apply([a.RemoveRoute(route)])
    with pytest.raises(OSError, match="link"):
        fake.apply([a.ReplaceRoute(replace(route, dev="missing0"))])
    with pytest.raises(FileNotFoundError):
        fake.apply([a.RemovePeer(key(9))])


def test_a_foreign_route_on_a_peer_cidr_is_never_replaced_and_blocks_nothing_else() -> None:
    desired = planned(node(2), node(3))
    blocked = sorted(desired.routes, key=lambda r: str(r.dst))[0]
    foreign = replace(blocked, dev="eth9", via=None)
    actual = replace(FakeDataplane().observe(), foreign_routes=frozenset({foreign}))
    actions = diff(desired, actual)
    routed = {x.route.dst for x in actions if isinstance(x, a.ReplaceRoute)}
    assert blocked.dst not in routed
    assert routed == {r.dst for r in desired.routes} - {blocked.dst}
    assert {p.public_key for x in actions if isinstance(x, a.AddPeer) for p in [x.peer]} == {key(2), key(3)}


@pytest.mark.parametrize("mtu", [0, 1380, 8920], ids=["derived", "configured-small", "jumbo"])
def test_a_new_wireguard_link_gets_its_mtu_in_the_same_pass(mtu: int) -> None:
    desired = planned(node(2), config=MeshConfig(wireguard=WireGuardSettings(mtu=mtu)))
    assert desired.wireguard is not None
    fake = converged(desired)  # one pass from nothing, then nothing left to do
    assert fake.observe().wireguard.mtu == desired.wireguard.mtu  # type: ignore[union-attr]


def test_our_route_next_to_a_foreign_one_still_moves() -> None:
    """A foreign route at another metric beside ours: replacing touches only ours, so a toggle from
    VXLAN back to WireGuard must still move it (or traffic would stay in clear under Enabled)."""
    enabled = planned(node(2))
    disabled = planned(node(2), config=MeshConfig(mode=EncryptionMode.DISABLED))
    fake = converged(disabled)
    (ours,) = fake.observe().routes
    foreign = replace(ours, dev="eth9", via=None)
    actual = replace(fake.observe(), foreign_routes=frozenset({foreign}))
    moves = [x for x in diff(enabled, actual) if isinstance(x, a.ReplaceRoute)]
    assert [m.route for m in moves] == sorted(enabled.routes, key=str)
