"""The planner: from a datastore snapshot and the local node to the kernel state we want. Pure.

No I/O, no clock, no DNS. The result does not depend on the order of the snapshot's records.
Transport decisions per pair live in `meshd.core.pairs`, cluster-wide conflicts in `meshd.core.conflicts`,
and each transport's device, per-peer entries and routes in its own module (`meshd.core.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from meshd.core.conflicts import ClusterView, cluster_view
from meshd.core.guard import plan_guards
from meshd.core.model import LocalNode, MeshConfig, Snapshot, Transport
from meshd.core.pairs import decide_pair
from meshd.core.registry import TRANSPORTS
from meshd.core.state import DesiredState, DeviceNames, Problem, Route
from meshd.core.transport import PairPlan, PlanContext, device_addresses

DEFAULT_NAMES = DeviceNames()


def plan(snapshot: Snapshot, local: LocalNode, *, names: DeviceNames = DEFAULT_NAMES) -> DesiredState:
    """The desired kernel state of `local` for this snapshot: devices, peers, FDB/neighbours, routes."""
    view = cluster_view(local.node, snapshot.nodes)
    pairs = tuple(decide_pair(local, peer, config=snapshot.config, view=view) for peer in view.remotes)
    return assemble(pairs, local, snapshot.config, view, names)


def assemble(
    pairs: Sequence[PairPlan], local: LocalNode, config: MeshConfig, view: ClusterView, names: DeviceNames
) -> DesiredState:
    """The desired state from the pairs' decisions (one per remote of `view`, in its order)."""
    ctx = PlanContext(local, config, names, device_addresses(local.node.pod_cidrs))
    state = DesiredState(pairs=tuple(p.decision for p in pairs))
    for encapsulation in TRANSPORTS.values():
        state = encapsulation.plan(state, pairs, ctx)
    routes, route_problems = plan_routes(pairs, names)
    problems = (*view.problems, *_pair_problems(pairs), *route_problems)
    guards = plan_guards(config, local.node, view, (r.dst for r in routes))
    return replace(state, routes=routes, problems=problems, guards=guards)


def plan_routes(pairs: Sequence[PairPlan], names: DeviceNames) -> tuple[frozenset[Route], list[Problem]]:
    """One route per pod CIDR of each pair with a transport, as that transport routes it."""
    routes: set[Route] = set()
    problems = []
    for pair in pairs:
        if pair.transport is Transport.NONE:
            continue
        for cidr in pair.peer.pod_cidrs:
            route = TRANSPORTS[pair.transport].route(pair.peer, cidr, names)
            if isinstance(route, Route):
                routes.add(route)
            else:
                problems.append(route)
    return frozenset(routes), problems


def _pair_problems(pairs: Sequence[PairPlan]) -> list[Problem]:
    """Pairs without any pod route (conflicts are reported once, by the conflict finder)."""
    return [Problem(p.problem, (p.peer.name,), f"{p.peer.name}: {p.reason}") for p in pairs if p.problem]
