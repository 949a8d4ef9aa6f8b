"""Address clashes between nodes, resolved by leaving a minimal set of nodes out of the mesh. Pure.

Two nodes clash when a pod CIDR of one overlaps a pod CIDR of the other (`pod-cidr-conflict`), or when
a pod CIDR of one covers the underlay address or WireGuard endpoint of the other
(`pod-cidr-covers-underlay`: routing that CIDR into the overlay would route the overlay's own outer
packets into it). Every node applies these rules to the same snapshot and reaches the same verdict,
whatever the order of the records and whichever node it is:

1. While clashes remain, the node with the most clashes is left out; ties go to the node whose clashing
   part is broader (a shorter prefix relative to its family's length; an address counts as a full-length
   prefix, so of a pod CIDR and the address it covers, the pod CIDR's node goes), then to the greater
   name. Clashes with a node already left out no longer count.
2. Then every node left out that no longer clashes with any node still in the mesh is let back in, the
   last one left out first. The result is minimal: letting any node that is still out back in would
   bring a clash back.

So a node claiming a range over many others is left out, not the many, and one bad record can put at
most the nodes it clashes with out of the mesh, and only when it clashes with a single one.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from meshd.core.model import IPAddress, IPNetwork, Node
from meshd.core.state import Problem

OVERLAP, COVER = "pod-cidr-conflict", "pod-cidr-covers-underlay"
MAX_LISTED = 3  # clashes named in one problem's detail
LOOP = "(tunnel packets would be routed into the tunnel)"


@dataclass(frozen=True, slots=True)
class Clash:
    """One clash seen from one node: its part (a pod CIDR, or an address) against the other's part."""

    kind: str
    mine: IPNetwork | IPAddress
    theirs: IPNetwork | IPAddress
    label: str = ""  # for addresses: "underlay address" or "WireGuard endpoint"

    def describe(self, name: str, other: str) -> str:
        if self.kind == OVERLAP:
            return f"pod CIDR {self.mine} of {name} overlaps {self.theirs} of {other}"
        if isinstance(self.mine, IPAddress):
            return f"{self.label} {self.mine} of {name} lies in pod CIDR {self.theirs} of {other}"
        return f"pod CIDR {self.mine} of {name} covers the {self.label} {self.theirs} of {other}"

    @property
    def share(self) -> int:
        """This node's part as a prefix length scaled to 128 bits: smaller is broader."""
        if isinstance(self.mine, IPAddress):
            return 128
        return self.mine.prefixlen * 128 // self.mine.max_prefixlen


Graph = dict[str, dict[str, list[Clash]]]


def resolve_clashes(nodes: Sequence[Node]) -> tuple[dict[str, str], list[Problem]]:
    """The nodes left out (name -> why) and, per node left out, one problem per kind of clash."""
    graph = clash_graph(nodes)
    live = {name: set(others) for name, others in graph.items()}
    order: list[str] = []
    while any(live.values()):
        worst = max((n for n, others in live.items() if others), key=lambda n: _rank(graph, live, n))
        order.append(worst)
        for other in live.pop(worst):
            live[other].discard(worst)
    out = set(order)
    for name in reversed(order):
        if all(other in out for other in graph[name]):
            out.discard(name)
    excluded: dict[str, str] = {}
    problems = []
    for name in sorted(out):
        kept = sorted(other for other in graph[name] if other not in out)
        clashes = [(c, other) for other in kept for c in graph[name][other]]
        excluded[name] = _detail(name, clashes)
        for kind in (OVERLAP, COVER):
            of_kind = [(c, other) for c, other in clashes if c.kind == kind]
            if of_kind:
                names = tuple(sorted({name, *(other for _, other in of_kind)}))
                problems.append(Problem(kind, names, _detail(name, of_kind)))
    return excluded, problems


def _detail(name: str, clashes: Sequence[tuple[Clash, str]]) -> str:
    shown = ", ".join(c.describe(name, other) for c, other in clashes[:MAX_LISTED])
    more = f" (and {len(clashes) - MAX_LISTED} more)" if len(clashes) > MAX_LISTED else ""
    loop = f" {LOOP}" if any(c.kind == COVER for c, _ in clashes) else ""
    return f"{shown}{more}: {name} is left out of the mesh{loop}"


def _rank(graph: Graph, live: dict[str, set[str]], name: str) -> tuple[int, int, str]:
    """Greater ranks are left out first: more live clashes, then a broader part, then the name."""
    share = min(c.share for other in live[name] for c in graph[name][other])
    return (len(live[name]), -share, name)


def outer_addresses(node: Node) -> dict[IPAddress, str]:
    """The addresses the overlay's outer packets to `node` go to, with what each one is."""
    out = {node.underlay_ip: "underlay address"}
    if node.endpoint is not None:
        out.setdefault(node.endpoint.host, "WireGuard endpoint")
    return out


def self_covers(node: Node) -> list[tuple[IPNetwork, IPAddress, str]]:
    """The node's own outer addresses that lie in its own pod CIDRs."""
    return [
        (cidr, addr, label)
        for addr, label in outer_addresses(node).items()
        for cidr in node.pod_cidrs
        if addr in cidr
    ]


def clash_graph(nodes: Sequence[Node]) -> Graph:
    """For each node with a clash: the nodes it clashes with, and how. O((n + clashes) log n)."""
    graph: Graph = {}

    def add(a: str, b: str, clash: Clash, mirrored: Clash) -> None:
        graph.setdefault(a, {}).setdefault(b, []).append(clash)
        graph.setdefault(b, {}).setdefault(a, []).append(mirrored)

    # Prefixes either nest or are disjoint; sorted by (family, start, prefix length), every network that
    # contains another comes first, so a stack of the enclosing networks finds every overlap.
    entries = sorted(
        ((net.version, int(net.network_address), net.prefixlen, node.name), net)
        for node in nodes
        for net in node.pod_cidrs
    )
    stack: list[tuple[IPNetwork, str]] = []
    for (_, _, _, name), net in entries:
        while stack and not _contains(stack[-1][0], net):
            stack.pop()
        for outer, owner in stack:
            if owner != name:
                add(owner, name, Clash(OVERLAP, outer, net), Clash(OVERLAP, net, outer))
        stack.append((net, name))

    points = sorted(
        ((addr.version, int(addr)), addr, label, node.name)
        for node in nodes
        for addr, label in outer_addresses(node).items()
    )
    keys = [p[0] for p in points]
    for (_, _, _, name), net in entries:
        lo = bisect.bisect_left(keys, (net.version, int(net.network_address)))
        hi = bisect.bisect_right(keys, (net.version, int(net.broadcast_address)))
        for _, addr, label, owner in points[lo:hi]:
            if owner != name:
                add(name, owner, Clash(COVER, net, addr, label), Clash(COVER, addr, net, label))
    return graph


def _contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    if outer.version != inner.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]
