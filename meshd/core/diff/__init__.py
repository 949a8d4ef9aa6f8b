"""diff(desired, actual): the minimal, ordered kernel actions that turn `actual` into `desired`. Pure.

Order (make-before-break: a new transport is ready before routes move onto it, and routes leave before
their transport goes):
  1. device deletes that are part of a recreate
  2. device creates / configures / MTU / address adds
  3. peer adds and updates          4. neighbour adds          5. FDB adds
  6. route replaces                 7. route removes           8. FDB removes
  9. neighbour removes             10. peer removes           11. address removes
 12. device deletes
Guards (meshd.core.guard) go around all of it: added before step 1, removed after step 12.
Within each group the order is sorted, so the result is deterministic.
The reconciler diffs only once the datastore completed its first full sync, so what is not desired goes.
What a deleted link holds (addresses, peers, FDB, neighbours) goes with it and is not removed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshd.core import actions as a
from meshd.core.diff.links import (
    diff_ipip_device,
    diff_vxlan_device,
    diff_wireguard_device,
    ip_key,
    network_key,
)
from meshd.core.diff.wireguard import diff_peers
from meshd.core.guard import diff_guards
from meshd.core.model import IPAddress
from meshd.core.state import ActualState, DesiredState, FdbEntry, NeighborEntry, Route


def diff(desired: DesiredState, actual: ActualState) -> tuple[a.Action, ...]:
    """The actions, in order, that make the kernel hold `desired`."""
    wg = diff_wireguard_device(desired.wireguard, actual.wireguard)
    vx = diff_vxlan_device(desired.vxlan, actual.vxlan)
    ipip = diff_ipip_device(desired.ipip, actual.ipip)
    devices = (wg, vx, ipip)
    vanished = {d.vanished for d in devices if d.vanished is not None}
    deleted = {d.deleted for d in devices if d.deleted is not None}

    peer_changes: tuple[a.Action, ...] = ()
    peer_removes: tuple[a.Action, ...] = ()
    if desired.wireguard is not None:
        fresh = actual.wireguard is None or wg.vanished is not None
        seen = () if fresh or actual.wireguard is None else actual.wireguard.peers
        peer_changes, peer_removes = diff_peers(desired.peers, seen)

    fdb_adds, fdb_removes = _diff_fdb(desired, actual, gone=vanished | deleted)
    neigh_adds, neigh_removes = _diff_neighbors(desired, actual, gone=vanished | deleted)
    route_replaces, route_removes = _diff_routes(desired, actual, vanished=vanished)
    guard_adds, guard_removes = diff_guards(desired.guards, actual.guards)
    return (
        *guard_adds,
        *(x for d in devices for x in d.recreate),
        *(x for d in devices for x in d.setup),
        *peer_changes,
        *neigh_adds,
        *fdb_adds,
        *route_replaces,
        *route_removes,
        *fdb_removes,
        *neigh_removes,
        *peer_removes,
        *(x for d in devices for x in d.address_removes),
        *(x for d in devices for x in d.delete),
        *guard_removes,
    )


def _fdb_key(entry: FdbEntry) -> tuple[str, tuple[int, int]]:
    return (entry.mac, ip_key(entry.dst))


def _neighbor_key(entry: NeighborEntry) -> tuple[str, tuple[int, int]]:
    return (entry.dev, ip_key(entry.ip))


def _diff_fdb(
    desired: DesiredState, actual: ActualState, *, gone: set[str]
) -> tuple[Sequence[a.Action], Sequence[a.Action]]:
    """FDB entries are keyed by MAC like the kernel's unicast entries (one destination each, installed
    with replace): a changed destination is one AddFdb, and only MACs no longer wanted are removed."""
    have = frozenset() if actual.vxlan is None or actual.vxlan.name in gone else actual.fdb
    want = {e.mac: e for e in sorted(desired.fdb, key=_fdb_key)}
    adds: Sequence[a.Action] = []
    if desired.vxlan is not None:
        dev = desired.vxlan.name
        adds = [a.AddFdb(dev, e) for e in sorted(desired.fdb - have, key=_fdb_key)]
    removes: Sequence[a.Action] = []
    if actual.vxlan is not None:
        dev = actual.vxlan.name
        stale = (e for e in have - desired.fdb if e.mac not in want or want[e.mac] in have)
        removes = [a.RemoveFdb(dev, e) for e in sorted(stale, key=_fdb_key)]
    return adds, removes


def _diff_neighbors(
    desired: DesiredState, actual: ActualState, *, gone: set[str]
) -> tuple[Sequence[a.Action], Sequence[a.Action]]:
    """Neighbour entries are keyed by (device, address) like the kernel's: a changed MAC is replaced."""
    want: dict[tuple[str, IPAddress], NeighborEntry] = {(n.dev, n.ip): n for n in desired.neighbors}
    have = {(n.dev, n.ip): n for n in actual.neighbors if n.dev not in gone}
    added = sorted((n for k, n in want.items() if have.get(k) != n), key=_neighbor_key)
    removed = sorted((n for k, n in have.items() if k not in want), key=_neighbor_key)
    return [a.AddNeighbor(n) for n in added], [a.RemoveNeighbor(n) for n in removed]


def _diff_routes(
    desired: DesiredState, actual: ActualState, *, vanished: set[str]
) -> tuple[Sequence[a.Action], Sequence[a.Action]]:
    """Routes are keyed by destination: a route that moves between transports is replaced atomically.
    A destination that a foreign route already holds in our table is left to it (the reconciler reports
    it): replacing would overwrite a route we do not own."""
    have = frozenset(r for r in actual.routes if r.dev not in vanished)
    wanted_dsts = {r.dst for r in desired.routes}
    taken = {r.dst for r in actual.foreign_routes} - {r.dst for r in have}  # ours there too: ours to move
    replaces = [a.ReplaceRoute(r) for r in _sorted_routes(desired.routes - have) if r.dst not in taken]
    covered = {r.dst for r in desired.routes & have}  # a desired route already in place
    removes = [
        a.RemoveRoute(r)
        for r in _sorted_routes(have - desired.routes)
        if r.dst not in wanted_dsts or r.dst in covered
    ]
    return replaces, removes


def _sorted_routes(routes: frozenset[Route]) -> list[Route]:
    return sorted(routes, key=lambda r: (network_key(r.dst), r.dev))
