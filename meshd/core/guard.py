"""Required fails closed: which peers' pod CIDRs must never leave this node in clear, and the guards that
drop their traffic whenever the tunnel is not there. Pure.

Under `Required`, every pod CIDR of every selected peer gets a guard: an owned `unreachable` route
(protocol 109) at `GUARD_METRIC`, worse than any tunnel route's metric. While the tunnel route exists it
wins; when it vanishes (wireguard-go killed, the link deleted while the agent is down, before the first
sync after a reboot) the guard answers instead of the default route. Under `Enabled` and `Disabled` there
are no guards, so nothing can block the fallback. Guards are added before anything else in a pass and
removed after everything else, so a mode switch is make-before-break in both directions.

A CIDR that would cut the mesh itself is not guarded: one overlapping our own pod CIDRs, one covering any
node's underlay address or WireGuard endpoint (a guard would black-hole the tunnel's own packets), or one
of a record left out by a conflict that overlaps a pod CIDR of a peer in the mesh (the conflict finder
reports those records).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meshd.core.conflicts import ClusterView
from meshd.core.model import EncryptionMode, IPNetwork, MeshConfig, Node
from meshd.core.state import Problem, Route

GUARD_METRIC = 10109
"""Route metric of the guards: worse than the tunnel routes (IPv4 0, IPv6 1024), so they win only when
the tunnel route is gone."""


@dataclass(frozen=True, slots=True)
class AddGuard:
    """Install the guard (an owned unreachable route at GUARD_METRIC) for one peer pod CIDR."""

    dst: IPNetwork


@dataclass(frozen=True, slots=True)
class RemoveGuard:
    """Remove the guard of a pod CIDR that need not be guarded any more. Guards go after everything else
    in a pass, so leaving Required is make-before-break: the new routes are in place before it goes."""

    dst: IPNetwork


GuardAction = AddGuard | RemoveGuard


class GuardTable(Protocol):
    """Our guard routes in one table, changed in batches. Adding one that is there already, or removing
    one that is gone, is not an error."""

    async def observe(self) -> frozenset[IPNetwork]: ...

    async def add_all(self, dsts: Sequence[IPNetwork]) -> None: ...

    async def remove_all(self, dsts: Sequence[IPNetwork]) -> None: ...


def plan_guards(
    config: MeshConfig, me: Node, view: ClusterView, routed: Iterable[IPNetwork]
) -> frozenset[IPNetwork]:
    """The pod CIDRs this node must never send in clear: under Required, those of every selected peer,
    whatever the pair's state (tunnel up, tunnel missing, not encryptable, left out by a conflict).
    `routed`: the destinations of the pod routes this node installs (a left-out record's guard must not
    shadow one of them; a peer in the mesh that gets no route has nothing to shadow)."""
    selector = config.node_selector
    if config.mode is not EncryptionMode.REQUIRED or not selector.matches(me.labels):
        return frozenset()
    keep_out = AddressIndex((me, *view.remotes))
    kept = tuple(routed)
    guards: set[IPNetwork] = set()
    for peer in view.remotes:
        if not selector.matches(peer.labels):
            continue
        out = view.pair_excluded(me.name, peer.name) is not None
        for cidr in peer.pod_cidrs:
            if _overlaps_any(cidr, me.pod_cidrs) or keep_out.any_in(cidr):
                continue  # would cut our own pods or the tunnels themselves
            if out and _overlaps_any(cidr, kept):
                continue  # a record left out must not shadow a route to a peer that is in the mesh
            guards.add(cidr)
    return frozenset(guards)


class AddressIndex:
    """The underlay and endpoint addresses of some nodes, sorted by family and value: whether one lies in
    a network is a binary search (every peer's pod CIDR is asked: a scan of every address for each would
    be quadratic in the cluster size)."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        found: dict[int, set[int]] = {4: set(), 6: set()}
        for n in nodes:
            found[n.underlay_ip.version].add(int(n.underlay_ip))
            if n.endpoint is not None:
                found[n.endpoint.host.version].add(int(n.endpoint.host))
        self._sorted = {version: sorted(values) for version, values in found.items()}

    def any_in(self, net: IPNetwork) -> bool:
        values = self._sorted[net.version]
        i = bisect.bisect_left(values, int(net.network_address))
        return i < len(values) and values[i] <= int(net.broadcast_address)


def _overlaps_any(cidr: IPNetwork, nets: Iterable[IPNetwork]) -> bool:
    return any(cidr.version == n.version and cidr.overlaps(n) for n in nets)


def diff_guards(
    want: frozenset[IPNetwork], have: frozenset[IPNetwork]
) -> tuple[tuple[AddGuard, ...], tuple[RemoveGuard, ...]]:
    """(adds, removes), sorted."""
    adds = tuple(AddGuard(d) for d in _sorted(want - have))
    removes = tuple(RemoveGuard(d) for d in _sorted(have - want))
    return adds, removes


def _sorted(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    return sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))


def guard_violations(guards: frozenset[IPNetwork], foreign: Iterable[Route]) -> tuple[Problem, ...]:
    """Foreign routes (not ours; meshd never removes them) that may carry a guarded CIDR's traffic past
    the guard: same destination or more specific, through a device. Drop routes (no device) are not."""
    problems = [
        Problem(
            "required-violation",
            (),
            f"encryption is Required for {guard} but a route that is not meshd's ({route.dst} dev "
            f"{route.dev}{f' via {route.via}' if route.via else ''}) may send its traffic in clear",
        )
        for route in sorted(foreign, key=lambda r: (r.dst.version, str(r.dst), r.dev))
        if route.dev
        for guard in _sorted(guards)
        if route.dst.version == guard.version and route.dst.subnet_of(guard)  # type: ignore[arg-type]
    ]
    return tuple(problems)
