"""The planner: from a datastore snapshot and the local node to the kernel state we want. Pure.

No I/O, no clock, no DNS. The result does not depend on the order of the snapshot's records.
Transport decisions per pair live in `meshd.core.pairs`, cluster-wide conflicts in `meshd.core.conflicts`,
and each transport's device, per-peer entries and routes in its own module (`meshd.core.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import chain
from operator import attrgetter

from meshd.core.assembly import Part, Tables, tables
from meshd.core.conflicts import ClusterView, cluster_view
from meshd.core.guard import plan_guards
from meshd.core.model import LocalNode, MeshConfig, Snapshot, Transport
from meshd.core.pairs import decide_pair
from meshd.core.registry import TRANSPORTS
from meshd.core.state import DesiredState, DeviceNames, FdbEntry, NeighborEntry, PeerSpec, Problem, Route
from meshd.core.transport import NO_ENTRIES, PairPlan, PlanContext, device_addresses

DEFAULT_NAMES = DeviceNames()
_DECISION, _PROBLEM, _PROBLEMS = attrgetter("decision"), attrgetter("problem"), attrgetter("problems")


def plan(snapshot: Snapshot, local: LocalNode, *, names: DeviceNames = DEFAULT_NAMES) -> DesiredState:
    """The desired kernel state of `local` for this snapshot: devices, peers, FDB/neighbours, routes."""
    view = cluster_view(local.node, snapshot.nodes)
    ctx = plan_context(local, snapshot.config, names)
    pairs = tuple(decide_pair(local, peer, config=snapshot.config, view=view) for peer in view.remotes)
    parts = [pair_part(p, ctx) for p in pairs]
    return assemble(pairs, parts, tables(parts), ctx, view)


def plan_context(local: LocalNode, config: MeshConfig, names: DeviceNames) -> PlanContext:
    return PlanContext(local, config, names, device_addresses(local.node.pod_cidrs))


def pair_part(pair: PairPlan, ctx: PlanContext) -> Part:
    """What one pair adds to the desired state: each transport's entries, and a pod route per pod CIDR
    (as the pair's transport routes it) when it has a transport."""
    peers: tuple[PeerSpec, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    neighbors: tuple[NeighborEntry, ...] = ()
    for encapsulation in TRANSPORTS.values():
        got = encapsulation.entries(pair, ctx)
        if got is not NO_ENTRIES:
            peers, fdb, neighbors = peers + got.peers, fdb + got.fdb, neighbors + got.neighbors
    if pair.transport is Transport.NONE:
        return Part(peers, fdb, neighbors)
    transport = TRANSPORTS[pair.transport]
    made = [transport.route(pair.peer, cidr, ctx.names) for cidr in pair.peer.pod_cidrs]
    routes = tuple(r for r in made if isinstance(r, Route))
    return Part(peers, fdb, neighbors, routes, tuple(r for r in made if isinstance(r, Problem)))


def assemble(
    pairs: Sequence[PairPlan], parts: Sequence[Part], tables: Tables, ctx: PlanContext, view: ClusterView
) -> DesiredState:
    """The desired state from the pairs' decisions (one per remote of `view`, in its order), their parts
    (in the same order) and the tables of those parts."""
    state = DesiredState(
        peers=tables.peers,
        fdb=tables.fdb,
        neighbors=tables.neighbors,
        routes=tables.routes,
        pairs=tuple(map(_DECISION, pairs)),
    )
    for encapsulation in TRANSPORTS.values():
        state = encapsulation.device(state, ctx)
    route_problems = chain.from_iterable(map(_PROBLEMS, parts))
    problems = (*view.problems, *_pair_problems(pairs), *route_problems)
    guards = plan_guards(ctx.config, ctx.local.node, view, (r.dst for r in tables.routes))
    return replace(state, problems=problems, guards=guards)


def _pair_problems(pairs: Sequence[PairPlan]) -> list[Problem]:
    """Pairs without any pod route (conflicts are reported once, by the conflict finder)."""
    return [
        Problem(p.problem, (p.peer.name,), f"{p.peer.name}: {p.reason}")
        for p in filter(_PROBLEM, pairs)
        if p.problem
    ]
