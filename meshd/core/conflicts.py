"""Cluster-wide conflicts, resolved deterministically: invalid records, duplicate node names, duplicate
(or copied: keys.proof tells the holder apart) public keys and MACs, pod CIDRs that cover an underlay address, and overlapping pod CIDRs. Pure.

Every verdict is computed over the whole cluster (all valid records plus the local node), never from one
node's point of view, so that every agent reaches the same verdict about every pair: node A's decision
about (A, B) equals node B's decision about (B, A), and every node agrees on which nodes are left out.
The local node is judged as its peers judge it: through the record it publishes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from keys.values import PublicKey
from meshd.core.codec.node import decode_node, encode_node
from meshd.core.model import InvalidNode, Node, NodeRecord
from meshd.core.overlaps import COVER, LOOP, resolve_clashes, self_covers
from meshd.core.state import Problem

_NOBODY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as the local node sees it, with its conflicts resolved."""

    remotes: tuple[Node, ...]  # valid remote nodes, sorted by name (excluded ones included)
    duplicate_keys: frozenset[PublicKey] = frozenset()  # keys of more than one node, none of them proven
    key_copiers: Mapping[str, str] = field(default_factory=lambda: _NOBODY)  # node name -> why: no WireGuard
    duplicate_macs: frozenset[str] = frozenset()  # VXLAN MACs published by more than one node name
    excluded: Mapping[str, str] = field(default_factory=lambda: _NOBODY)  # node name -> why it is out
    problems: tuple[Problem, ...] = ()

    def pair_excluded(self, local: str, peer: str) -> str | None:
        """Why the pair (local, peer) is out of the mesh, or None. Symmetric in its two names."""
        return self.excluded.get(local) or self.excluded.get(peer)

    def facts(self, node: Node) -> tuple[object, ...]:
        """Every cluster-wide fact about `node` that a pair decision may read (meshd.core.pairs and the
        transports' blockers): a decision whose two nodes and their facts are unchanged stays the same."""
        return (
            self.excluded.get(node.name),
            node.name in self.key_copiers,
            node.public_key in self.duplicate_keys,
            mac_key(node) in self.duplicate_macs,
        )


def cluster_view(local: Node, records: Iterable[NodeRecord]) -> ClusterView:
    """Sort the records out: drop our own, report invalid and ambiguous ones, find global conflicts."""
    by_name: dict[str, set[NodeRecord]] = {}
    for rec in records:
        if rec.name != local.name:
            by_name.setdefault(rec.name, set()).add(rec)
    remotes: list[Node] = []
    problems: list[Problem] = []
    for name in sorted(by_name):
        node = one_record(name, by_name[name], problems)
        if node is not None:
            remotes.append(node)
    excluded: dict[str, str] = {}
    detail = own_record_problem(local)
    if detail is not None:
        # Peers drop our record as invalid, so we are in nobody's mesh; and we judge the rest of the
        # cluster without ourselves, exactly as they do.
        excluded[local.name] = detail
        problems.append(Problem("local-node-unusable", (local.name,), detail))
        everyone: tuple[Node, ...] = tuple(remotes)
    else:
        everyone = (local, *remotes)
    dup_keys, copiers, key_problems = duplicate_keys(everyone)
    dup_macs, mac_problems = duplicate_macs(everyone)
    covers = [(n.name, cover) for n in sorted(everyone, key=lambda n: n.name) if (cover := self_cover(n))]
    excluded.update((name, detail) for name, (detail, _) in covers)
    cover_problems = [problem for _, (_, problem) in covers]
    clashing, clash_problems = resolve_clashes([n for n in everyone if n.name not in excluded])
    excluded.update(clashing)
    return ClusterView(
        remotes=tuple(remotes),
        duplicate_keys=dup_keys,
        key_copiers=MappingProxyType(copiers),
        duplicate_macs=dup_macs,
        excluded=MappingProxyType(excluded),
        problems=(*problems, *key_problems, *mac_problems, *cover_problems, *clash_problems),
    )


def one_record(name: str, recs: Collection[NodeRecord], problems: list[Problem]) -> Node | None:
    """The node the distinct records of one name stand for, or None (a problem added: several records
    under that name, or an invalid one)."""
    if len(recs) > 1:
        detail = f"{len(recs)} different records are named {name}: none of them is used"
        problems.append(Problem("duplicate-node-name", (name,), detail))
        return None
    (rec,) = recs
    if isinstance(rec, InvalidNode):
        problems.append(Problem("invalid-node", (name,), f"node {name or '?'}: {rec.detail}"))
        return None
    return rec


def duplicate_keys(nodes: Sequence[Node]) -> tuple[frozenset[PublicKey], dict[str, str], list[Problem]]:
    """Keys published by more than one node. When exactly one of them proves it holds the key, it keeps
    it and the others (copiers) are left out of WireGuard; otherwise (no proof: legacy keys; or several:
    a copied identity seed) nobody can be told apart and the key is unusable. Returns (unusable keys,
    copier name -> why, problems)."""
    owners: dict[PublicKey, list[Node]] = {}
    for node in nodes:
        if node.public_key is not None:
            owners.setdefault(node.public_key, []).append(node)
    unusable: set[PublicKey] = set()
    copiers: dict[str, str] = {}
    problems = []
    shared = sorted((key, holders) for key, holders in owners.items() if len(holders) > 1)
    for key, holders in shared:  # sorting only the shared keys: sorting every key costs more than the rest
        names = sorted(n.name for n in holders)
        provers = sorted(
            n.name for n in holders if n.key_proof is not None and n.key_proof.proves(n.name, key)
        )
        if len(provers) == 1:
            out = tuple(n for n in names if n != provers[0])
            detail = (
                f"{', '.join(out)} publish{'es' if len(out) == 1 else ''} the public key {key.short}... of "
                f"{provers[0]} without a valid proof of holding it: left out of WireGuard ({provers[0]} "
                f"proves it and keeps it)"
            )
            copiers.update(dict.fromkeys(out, detail))
            problems.append(Problem("copied-public-key", out, detail))
            continue
        unusable.add(key)
        why = "none of them proves it holds it" if not provers else "each proves it (a copied identity seed)"
        detail = f"nodes {', '.join(names)} publish the same public key {key.short}... and {why}: none of them uses WireGuard"
        problems.append(Problem("duplicate-public-key", tuple(names), detail))
    return frozenset(unusable), copiers, problems


def own_record_problem(local: Node) -> str | None:
    """Why peers cannot use the record we publish (they decode it as invalid), or None."""
    own = decode_node(encode_node(local))  # what every peer makes of the record we publish
    return (
        f"this node's own record is not usable by peers: {own.detail}"
        if isinstance(own, InvalidNode)
        else None
    )


def mac_key(node: Node) -> str | None:
    """The node's VXLAN MAC as compared across nodes (case does not tell two MACs apart)."""
    return node.vxlan_mac.lower() if node.vxlan_mac is not None else None


def duplicate_macs(nodes: Sequence[Node]) -> tuple[frozenset[str], list[Problem]]:
    """A unicast MAC has one FDB destination: nodes sharing a VXLAN MAC (cloned machines) cannot use VXLAN."""
    owners: dict[str, set[str]] = {}
    for node in nodes:
        mac = mac_key(node)
        if mac is not None:
            owners.setdefault(mac, set()).add(node.name)
    shared = sorted((mac, names) for mac, names in owners.items() if len(names) > 1)  # only these sorted
    problems = []
    for mac, names in shared:
        listed = ", ".join(sorted(names))
        detail = f"nodes {listed} publish the same VXLAN MAC {mac}: none of them uses VXLAN"
        problems.append(Problem("duplicate-vxlan-mac", tuple(sorted(names)), detail))
    return frozenset(mac for mac, _ in shared), problems


def self_cover(node: Node) -> tuple[str, Problem] | None:
    """A node with a pod CIDR that holds its own underlay address or endpoint is out, whoever else is
    there: why, and the problem; None when it covers neither."""
    covers = self_covers(node)
    if not covers:
        return None
    cidr, addr, label = covers[0]
    detail = f"pod CIDR {cidr} of {node.name} covers its own {label} {addr}: {node.name} is left out of the mesh {LOOP}"
    return detail, Problem(COVER, (node.name,), detail)
