"""The PSK pair plan from the last one: only the peers whose node record or pair decision changed are
decided again. Pure: `replan_pairs(last, snapshot, local, desired).plan` always equals
`plan_pairs(snapshot, local, desired)` (tests/test_pq_follow.py holds them equal over random histories).

Records and decisions are followed by identity (the datastore shares unchanged records, the planner
unchanged decisions), so a change costs the peers it touches, not the 5000 of the cluster. A change of
our own node, the MeshConfig's PSK settings, or a name held by two records decides every pair again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from keys.values import PublicKey
from meshd.core.model import IPAddress, LocalNode, Node, NodeRecord, Snapshot, Transport
from meshd.core.moves import Moves
from meshd.core.state import DesiredState, PairDecision, PeerSpec
from meshd.pq.pairs import PqPair, PqPlan, plan_pairs, verdict

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Followed(Generic[T]):
    """A sequence, for telling which entries the next one shares (by identity, meshd.core.moves): the
    datastore shares unchanged records, the planner unchanged decisions and peers, and says which
    changed."""

    items: tuple[T, ...]

    @classmethod
    def of(cls, items: tuple[T, ...]) -> Followed[T]:
        return cls(items)

    def follow(self, items: tuple[T, ...], moves: Moves) -> tuple[Followed[T], Sequence[T], Sequence[T]]:
        """The next sequence followed, and the entries that went and came (`moves`: the agent's)."""
        if items is self.items:
            return self, (), ()
        went, came = moves.moved(self.items, items)
        return Followed(items), went, came


@dataclass(frozen=True, slots=True)
class PqPlanned:
    """A PSK plan, what it was made from, and which peers it decided again (None: every one)."""

    plan: PqPlan
    touched: frozenset[str] | None = None
    key: tuple[object, ...] = ()  # PSK settings and our node
    records: Followed[NodeRecord] = field(default_factory=lambda: Followed(()))
    decisions: Followed[PairDecision] = field(default_factory=lambda: Followed(()))
    nodes: Mapping[str, tuple[Node, ...]] = field(default_factory=dict)  # peer name -> its Node records
    wireguard: frozenset[str] = frozenset()  # peers whose pair uses WireGuard
    peers: Followed[PeerSpec] = field(default_factory=lambda: Followed(()))
    keys: Mapping[str, PublicKey] = field(default_factory=dict)  # peer name -> its WireGuard peer's key
    rekeyed: frozenset[str] = frozenset()  # peers whose WireGuard peer changed in this plan
    addrs: Mapping[IPAddress, int] = field(default_factory=dict)  # our inner addresses -> pairs using each

    def off_keys(self) -> list[tuple[str, PublicKey]]:
        """(peer, key) of the WireGuard peers without a PSK that were decided again or changed key, in
        name order (every one when the plan was made whole); only peers the plan has a key for."""
        off = self.plan.off
        if self.touched is None:
            return [(name, self.keys[name]) for name, _ in off if name in self.keys]
        found = []
        for name in sorted(self.touched | self.rekeyed):
            i = bisect_left(off, (name,))
            if i < len(off) and off[i][0] == name and name in self.keys:
                found.append((name, self.keys[name]))
        return found

    def pair_of(self, name: str) -> PqPair | None:
        pairs = self.plan.pairs
        i = bisect_left(pairs, name, key=_peer)
        return pairs[i] if i < len(pairs) and pairs[i].peer == name else None


def replan_pairs(
    last: PqPlanned | None, snapshot: Snapshot, local: LocalNode, desired: DesiredState, moves: Moves
) -> PqPlanned:
    """The plan of `snapshot`, from `last` when there is one (`moves`: the agent's, says what moved)."""
    wg = snapshot.config.wireguard
    key = (wg.post_quantum, wg.psk_rotation_interval, local.node)
    if last is None or last.key != key:
        return _whole(key, snapshot, local, desired)
    records, nodes, by_record = _follow_records(last, snapshot.nodes, moves)
    decisions, wireguard, by_decision = _follow_decisions(last, desired.pairs, moves)
    touched = by_record | by_decision
    if any(len(nodes.get(name, ())) > 1 for name in touched):
        return _whole(key, snapshot, local, desired)  # which record counts: the whole plan says
    pairs, off, addrs = list(last.plan.pairs), list(last.plan.off), dict(last.addrs)
    for name in sorted(touched):
        _drop(pairs, off, addrs, name)
        held = nodes.get(name, ())
        if name in wireguard and held:
            found = verdict(wg.post_quantum, local.node, held[0])
            if isinstance(found, PqPair):
                pairs.insert(bisect_left(pairs, name, key=_peer), found)
                addrs[found.local_addr] = addrs.get(found.local_addr, 0) + 1
            else:
                off.insert(bisect_left(off, (name,)), (name, found))
    peers, keys, rekeyed = _follow_keys(last, desired.peers, moves)
    plan = PqPlan(wg.post_quantum, wg.psk_rotation_interval, tuple(pairs), tuple(off))
    followed = (records, decisions, nodes, wireguard, peers, keys, rekeyed, addrs)
    return PqPlanned(plan, frozenset(touched), key, *followed)


def _whole(key: tuple[object, ...], snapshot: Snapshot, local: LocalNode, desired: DesiredState) -> PqPlanned:
    nodes: dict[str, tuple[Node, ...]] = {}
    _add_nodes(nodes, snapshot.nodes)
    wireguard = frozenset(d.node for d in desired.pairs if d.transport is Transport.WIREGUARD)
    keys = {p.node: p.public_key for p in desired.peers}
    plan = plan_pairs(snapshot, local, desired)
    addrs: dict[IPAddress, int] = {}
    for pair in plan.pairs:
        addrs[pair.local_addr] = addrs.get(pair.local_addr, 0) + 1
    records, decisions, peers = (
        Followed.of(snapshot.nodes),
        Followed.of(desired.pairs),
        Followed.of(desired.peers),
    )
    followed = (records, decisions, nodes, wireguard, peers, keys, frozenset[str](), addrs)
    return PqPlanned(plan, None, key, *followed)


def _follow_keys(
    last: PqPlanned, specs: tuple[PeerSpec, ...], moves: Moves
) -> tuple[Followed[PeerSpec], Mapping[str, PublicKey], frozenset[str]]:
    """Peer name -> its WireGuard peer's key, from the peers that came and went."""
    peers, went, came = last.peers.follow(specs, moves)
    if not went and not came:
        return peers, last.keys, frozenset()
    keys = dict(last.keys)
    for spec in went:
        if keys.get(spec.node) == spec.public_key:
            del keys[spec.node]
    for spec in came:
        keys[spec.node] = spec.public_key
    return peers, keys, frozenset(p.node for p in (*went, *came))


def _follow_records(
    last: PqPlanned, items: tuple[NodeRecord, ...], moves: Moves
) -> tuple[Followed[NodeRecord], Mapping[str, tuple[Node, ...]], set[str]]:
    records, went, came = last.records.follow(items, moves)
    if not went and not came:
        return records, last.nodes, set()
    nodes = dict(last.nodes)
    for gone in went:
        if isinstance(gone, Node):
            left = tuple(n for n in nodes.get(gone.name, ()) if n is not gone)
            nodes[gone.name] = left
            if not left:
                del nodes[gone.name]
    _add_nodes(nodes, came)
    return records, nodes, {r.name for r in (*went, *came)}


def _add_nodes(nodes: dict[str, tuple[Node, ...]], records: Iterable[NodeRecord]) -> None:
    for record in records:
        if isinstance(record, Node):
            nodes[record.name] = (*nodes.get(record.name, ()), record)


def _follow_decisions(
    last: PqPlanned, items: tuple[PairDecision, ...], moves: Moves
) -> tuple[Followed[PairDecision], frozenset[str], set[str]]:
    """(One decision per peer name: the planner's.)"""
    decisions, went, came = last.decisions.follow(items, moves)
    out = {d.node for d in went if d.transport is Transport.WIREGUARD}
    into = {d.node for d in came if d.transport is Transport.WIREGUARD}
    return decisions, (last.wireguard - out) | into, {d.node for d in (*went, *came)}


def _peer(pair: PqPair) -> str:
    return pair.peer


def _drop(pairs: list[PqPair], off: list[tuple[str, str]], addrs: dict[IPAddress, int], name: str) -> None:
    """Take the entries of `name` out of the sorted lists (and its pair's use of our inner address)."""
    i = bisect_left(pairs, name, key=_peer)
    if i < len(pairs) and pairs[i].peer == name:
        addr = pairs[i].local_addr
        addrs[addr] -= 1
        if not addrs[addr]:
            del addrs[addr]
        del pairs[i]
    j = bisect_left(off, (name,))
    if j < len(off) and off[j][0] == name:
        del off[j]
