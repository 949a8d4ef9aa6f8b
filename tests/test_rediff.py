"""The diff from the last one, case by case: what a wrong cut of the states would miss (a peer the kernel
loses, a foreign route that goes, an action the kernel does not show yet), the pass memo's use of it, and
the state fields it must follow. The properties are in test_rediff_properties.py."""

from __future__ import annotations

import ipaddress
from dataclasses import fields, replace
from typing import Any

from keys.values import PublicKey
from meshd.agent.passes import PlanMemo
from meshd.core import actions as a
from meshd.core.diff import diff
from meshd.core.model import LocalNode, Snapshot
from meshd.core.moves import Moves
from meshd.core.rediff import Diffed, rediff
from meshd.core.state import (
    ActualState,
    DesiredState,
    DeviceNames,
    ObservedPeer,
    ObservedWireGuard,
    PeerSpec,
    Route,
    WireGuardDeviceSpec,
)
from tests.fakes import FakeDataplane
from tests.test_incremental_properties import _node

EVERY = float("inf")  # cut the states down however many keys changed
KEYS = [PublicKey(bytes([i]) * 32) for i in range(1, 4)]
NETS = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(3)]

WG = WireGuardDeviceSpec("meshd0", KEYS[0], 51820, 1420)
PEER = PeerSpec(KEYS[1], None, frozenset({NETS[1]}))
SEEN = ObservedPeer(KEYS[1], None, frozenset({NETS[1]}))
ROUTE = Route(NETS[1], "meshd0")


def _kernel(*peers: ObservedPeer, **tables: Any) -> ActualState:
    return ActualState(wireguard=ObservedWireGuard("meshd0", KEYS[0], 51820, 1420, peers=peers), **tables)


def _cut(before: tuple[DesiredState, ActualState], after: tuple[DesiredState, ActualState]) -> Diffed:
    """The diff of `after` from the one of `before`, which must have cut the states down."""
    moves = Moves()
    now = rediff(rediff(None, *before, moves), *after, moves, whole_past=EVERY)
    assert (now.actions, now.whole) == (diff(*after), False)
    return now


def test_a_peer_the_kernel_loses_is_added_again_and_one_no_longer_wanted_is_removed() -> None:
    desired = DesiredState(wireguard=WG, peers=(PEER,))
    assert _cut((desired, _kernel(SEEN)), (desired, _kernel())).actions == (a.AddPeer(PEER),)
    unwanted = DesiredState(wireguard=WG)
    assert _cut((desired, _kernel(SEEN)), (unwanted, _kernel(SEEN))).actions == (a.RemovePeer(KEYS[1]),)


def test_a_peer_changed_by_hand_is_changed_back_and_a_new_handshake_is_no_change() -> None:
    desired = DesiredState(wireguard=WG, peers=(PEER,))
    moved = replace(SEEN, allowed_ips=frozenset({NETS[2]}))
    back = a.UpdatePeer(KEYS[1], allowed_ips=PEER.allowed_ips)
    assert _cut((desired, _kernel(SEEN)), (desired, _kernel(moved))).actions == (back,)
    talked = replace(SEEN, last_handshake=1.0, rx_bytes=1, tx_bytes=1)
    assert _cut((desired, _kernel(SEEN)), (desired, _kernel(talked))).actions == ()


def test_a_foreign_route_that_goes_frees_its_destination_for_ours() -> None:
    moves = Moves()
    desired = DesiredState(wireguard=WG, routes=frozenset({ROUTE}))
    held = _kernel(foreign_routes=frozenset({Route(NETS[1], "eth9")}))
    assert rediff(None, desired, held, moves).actions == ()
    assert _cut((desired, held), (desired, _kernel())).actions == (a.ReplaceRoute(ROUTE),)


def test_what_the_last_diff_did_and_the_kernel_does_not_show_is_still_owed() -> None:
    desired = DesiredState(wireguard=WG, peers=(PEER,), routes=frozenset({ROUTE}))
    other = replace(PEER, public_key=KEYS[2], allowed_ips=frozenset({NETS[2]}))
    grown = replace(desired, peers=(PEER, other))
    now = _cut((desired, _kernel()), (grown, _kernel()))  # the kernel applied nothing
    assert now.actions == (a.ReplaceRoute(ROUTE), a.AddPeer(PEER), a.AddPeer(other))


def test_the_pass_memo_diffs_a_node_add_from_the_last_diff_and_then_the_kernel_that_holds_it() -> None:
    moves = Moves()
    cluster = [_node(i) for i in range(40)]
    memo, local, names, fake = PlanMemo(moves), LocalNode(cluster[0]), DeviceNames(), FakeDataplane()
    desired = memo.plan(Snapshot.of(cluster), local, names)
    fake.apply(memo.diff(desired, fake.observe())[0])
    assert memo.diff(desired, fake.observe())[0] == ()
    grown = memo.plan(Snapshot.of([*cluster, _node(40)]), local, names)
    added = rediff(rediff(None, desired, fake.observe(), moves), grown, fake.observe(), moves)
    assert not added.whole and added.actions == diff(grown, fake.observe())
    assert {type(x) for x in added.actions} == {a.AddPeer, a.AddFdb, a.AddNeighbor, a.ReplaceRoute}
    actions, _ = memo.diff(grown, fake.observe())
    assert actions == added.actions
    fake.apply(actions)
    assert memo.diff(grown, fake.observe())[0] == ()


def test_every_field_the_diff_reads_is_a_table_or_a_device_rediff_follows() -> None:
    """A new field of the states must be followed by rediff (a table or a device) before this passes."""
    devices = {"wireguard", "vxlan", "ipip"}
    assert {f.name for f in fields(DesiredState)} == {
        *devices,
        "peers",
        "routes",
        "fdb",
        "neighbors",
        "guards",
        "pairs",
        "problems",
    }  # pairs and problems: not read by the diff
    assert {f.name for f in fields(ActualState)} == {
        *devices,
        "routes",
        "foreign_routes",
        "fdb",
        "neighbors",
        "guards",
    }
