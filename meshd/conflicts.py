"""Cluster-wide conflicts, resolved deterministically: invalid records, duplicate node names, duplicate
public keys and overlapping pod CIDRs. Pure.

Every verdict is computed over the whole cluster (all valid records plus the local node), never from one
node's point of view, so that every agent reaches the same verdict about every pair: node A's decision
about (A, B) equals node B's decision about (B, A).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from keys.values import PublicKey
from meshd.model import InvalidNode, IPNetwork, Node, NodeRecord
from meshd.state import Problem


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as the local node sees it, with its conflicts resolved."""

    remotes: tuple[Node, ...]  # valid remote nodes, sorted by name (excluded ones included)
    duplicate_keys: frozenset[PublicKey] = frozenset()  # keys published by more than one node name
    duplicate_macs: frozenset[str] = frozenset()  # VXLAN MACs published by more than one node name
    excluded: Mapping[str, str] = field(default_factory=dict)  # node name -> why it is out of the mesh
    problems: tuple[Problem, ...] = ()

    def pair_excluded(self, local: str, peer: str) -> str | None:
        """Why the pair (local, peer) is out of the mesh, or None. Symmetric in its two names."""
        return self.excluded.get(local) or self.excluded.get(peer)


def cluster_view(local: Node, records: Iterable[NodeRecord]) -> ClusterView:
    """Sort the records out: drop our own, report invalid and ambiguous ones, find global conflicts."""
    by_name: dict[str, set[NodeRecord]] = {}
    for rec in records:
        if rec.name != local.name:
            by_name.setdefault(rec.name, set()).add(rec)
    remotes: list[Node] = []
    problems: list[Problem] = []
    for name in sorted(by_name):
        recs = by_name[name]
        if len(recs) > 1:
            detail = f"{len(recs)} different records are named {name}: none of them is used"
            problems.append(Problem("duplicate-node-name", (name,), detail))
            continue
        (rec,) = recs
        if isinstance(rec, InvalidNode):
            problems.append(Problem("invalid-node", (name,), f"node {name or '?'}: {rec.detail}"))
        else:
            remotes.append(rec)
    everyone = (local, *remotes)
    dup_keys, key_problems = _duplicate_keys(everyone)
    dup_macs, mac_problems = _duplicate_macs(everyone)
    excluded, cidr_problems = _cidr_conflicts(everyone)
    return ClusterView(
        remotes=tuple(remotes),
        duplicate_keys=dup_keys,
        duplicate_macs=dup_macs,
        excluded=excluded,
        problems=(*problems, *key_problems, *mac_problems, *cidr_problems),
    )


def _duplicate_keys(nodes: Sequence[Node]) -> tuple[frozenset[PublicKey], list[Problem]]:
    owners: dict[PublicKey, set[str]] = {}
    for node in nodes:
        if node.public_key is not None:
            owners.setdefault(node.public_key, set()).add(node.name)
    problems = []
    for key, names in sorted(owners.items()):
        if len(names) > 1:
            listed = ", ".join(sorted(names))
            detail = f"nodes {listed} publish the same public key {key.short}...: none of them uses WireGuard"
            problems.append(Problem("duplicate-public-key", tuple(sorted(names)), detail))
    return frozenset(k for k, names in owners.items() if len(names) > 1), problems


def _duplicate_macs(nodes: Sequence[Node]) -> tuple[frozenset[str], list[Problem]]:
    """A unicast MAC has one FDB destination: nodes sharing a VXLAN MAC (cloned machines) cannot use VXLAN."""
    owners: dict[str, set[str]] = {}
    for node in nodes:
        if node.vxlan_mac is not None:
            owners.setdefault(node.vxlan_mac.lower(), set()).add(node.name)
    problems = []
    for mac, names in sorted(owners.items()):
        if len(names) > 1:
            listed = ", ".join(sorted(names))
            detail = f"nodes {listed} publish the same VXLAN MAC {mac}: none of them uses VXLAN"
            problems.append(Problem("duplicate-vxlan-mac", tuple(sorted(names)), detail))
    return frozenset(m for m, names in owners.items() if len(names) > 1), problems


def _cidr_conflicts(nodes: Sequence[Node]) -> tuple[dict[str, str], list[Problem]]:
    """For each pair of nodes with overlapping pod CIDRs, the greater name (the claimant) is left out."""
    first: dict[tuple[str, str], tuple[IPNetwork, IPNetwork]] = {}
    for (net_a, name_a), (net_b, name_b) in _overlaps(nodes):
        keeper, claimant = sorted((name_a, name_b))
        nets = (net_a, net_b) if name_a == keeper else (net_b, net_a)
        first.setdefault((keeper, claimant), nets)
    excluded: dict[str, str] = {}
    problems = []
    for (keeper, claimant), (kept, claimed) in sorted(first.items()):
        detail = f"pod CIDR {claimed} of {claimant} overlaps {kept} of {keeper}: {claimant} is left out of the mesh"
        excluded.setdefault(claimant, detail)
        problems.append(Problem("pod-cidr-conflict", (keeper, claimant), detail))
    return excluded, problems


def _overlaps(nodes: Sequence[Node]) -> list[tuple[tuple[IPNetwork, str], tuple[IPNetwork, str]]]:
    """Pairs of overlapping CIDRs of different nodes, in O(n log n + overlaps).

    Prefixes either nest or are disjoint; sorted by (family, start, prefix length), every network that
    contains another comes first, so a stack of the enclosing networks finds every overlap.
    """
    entries = sorted(
        ((net.version, int(net.network_address), net.prefixlen, node.name), net)
        for node in nodes
        for net in node.pod_cidrs
    )
    found: list[tuple[tuple[IPNetwork, str], tuple[IPNetwork, str]]] = []
    stack: list[tuple[IPNetwork, str]] = []
    for (_, _, _, name), net in entries:
        while stack and not _contains(stack[-1][0], net):
            stack.pop()
        found.extend(((outer, owner), (net, name)) for outer, owner in stack if owner != name)
        stack.append((net, name))
    return found


def _contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    if outer.version != inner.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]
