"""diff(desired, actual): the minimal, ordered kernel actions that turn `actual` into `desired`. Pure.

Order (make-before-break: a new transport is ready before routes move onto it, and routes leave before
their transport goes):
  1. device deletes that are part of a recreate
  2. device creates / configures / MTU / address adds
  3. routes straight into a device (no gateway: the WireGuard tunnel) to destinations we route nowhere yet
  4. per-peer entry adds and updates, transport by transport (peers; neighbours, then FDB)
  5. the other route replaces       5b. route removes
  6. per-peer entry removes, transports in reverse (FDB, then neighbours; peers)
  7. address removes                8. device deletes
Guards (meshd.core.guard) go around all of it: added before step 1, removed after step 8.
Step 3 closes a window: a new peer's queued packets arrive the moment its entry is in, and our answers
must find the tunnel route, not the default route (in clear). A route into the tunnel before its peer
only drops what no route carried before; a route that moves waits for its entries (step 5).
Within each group the order is sorted, so the result is deterministic. Each transport's part comes from its
`Encapsulation.diff` (meshd.core.registry); routes are generic: ours carry our protocol number.
The reconciler diffs only once the datastore completed its first full sync, so what is not desired goes.
What a deleted link holds (addresses, peers, FDB, neighbours) goes with it and is not removed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshd.core import actions as a
from meshd.core.devices import network_key
from meshd.core.guard import diff_guards
from meshd.core.registry import TRANSPORTS
from meshd.core.state import ActualState, DesiredState, Route


def diff(desired: DesiredState, actual: ActualState) -> tuple[a.Action, ...]:
    """The actions, in order, that make the kernel hold `desired`."""
    parts = tuple(encapsulation.diff(desired, actual) for encapsulation in TRANSPORTS.values())
    vanished = {p.vanished for p in parts if p.vanished is not None}
    have = frozenset(r for r in actual.routes if r.dev not in vanished) if vanished else actual.routes
    route_replaces, route_removes = _diff_routes(desired, actual, have)
    routed = {r.dst for r in have} if route_replaces else set()
    first = {x for x in route_replaces if x.route.via is None and x.route.dst not in routed}
    guard_adds, guard_removes = diff_guards(desired.guards, actual.guards)
    return (
        *guard_adds,
        *(x for p in parts for x in p.recreate),
        *(x for p in parts for x in p.setup),
        *(x for x in route_replaces if x in first),
        *(x for p in parts for x in p.entry_adds),
        *(x for x in route_replaces if x not in first),
        *route_removes,
        *(x for p in reversed(parts) for x in p.entry_removes),
        *(x for p in parts for x in p.address_removes),
        *(x for p in parts for x in p.delete),
        *guard_removes,
    )


def _diff_routes(
    desired: DesiredState, actual: ActualState, have: frozenset[Route]
) -> tuple[Sequence[a.ReplaceRoute], Sequence[a.RemoveRoute]]:
    """Routes are keyed by destination: a route that moves between transports is replaced atomically.
    A destination that a foreign route already holds in our table is left to it (the reconciler reports
    it): replacing would overwrite a route we do not own."""
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
