"""The cluster-wide conflict search, kept current from one snapshot to the next. Pure.

`ClusterIndex.update(local, records)` gives the same `ClusterView` as `cluster_view(local, records)`
(tests/test_cluster_index_properties.py holds them equal after any history), but it looks again only at the
records that changed: records are told apart by identity (a datastore shares unchanged decoded records
between snapshots), public keys, VXLAN MACs and pod CIDRs are indexed, and a changed node's clashes are
found by looking its pod CIDRs and outer addresses up in those indexes. The verdicts themselves are still
reached over the whole cluster by the same rules: only the few nodes that clash at all go to
`resolve_clashes`, which decides them exactly as it would with every node there (nodes without a clash add
no edge to the clash graph). An update copies the index (dicts and lists, shallowly: cheap) and never
changes the one it started from.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from meshd.core.conflicts import (
    ClusterView,
    duplicate_keys,
    duplicate_macs,
    one_record,
    own_record_problem,
    self_cover,
)
from meshd.core.model import Node, NodeRecord
from meshd.core.moves import Moves
from meshd.core.overlaps import resolve_clashes
from meshd.core.sharing import Sharing
from meshd.core.spatial import Spatial
from meshd.core.state import Problem


@dataclass(frozen=True, slots=True)
class ClusterIndex:
    """The records last seen and what is derived from them; `view` is their ClusterView."""

    view: ClusterView
    local: Node
    own_usable: str | None  # why peers cannot use our own record, or None
    records: tuple[NodeRecord, ...]  # as last seen (followed by identity: meshd.core.moves)
    by_name: Mapping[str, tuple[NodeRecord, ...]]
    members: Mapping[str, Node]  # valid, unambiguous nodes, ours included when peers can use it
    covering: Mapping[str, tuple[str, Problem]]  # members whose pod CIDR holds their own outer address
    partners: Mapping[str, frozenset[str]]  # members (not covering) -> those they clash with
    spatial: Spatial
    sharing: Sharing
    moved: frozenset[str] | None = None  # names whose member changed since the index updated (None: built)
    outside: frozenset[str] = frozenset()  # names with records but no member (duplicates, invalid records)
    clashing: frozenset[str] = frozenset()  # members with a partner

    @classmethod
    def build(cls, local: Node, records: Iterable[NodeRecord], moves: Moves) -> ClusterIndex:
        why = own_record_problem(local)
        work = _Work.start(cls(ClusterView(()), local, why, (), {}, {}, {}, {}, Spatial(), Sharing()))
        work.set_name(local.name, ())  # our own node is a member whatever the records say
        rows = tuple(records)
        return replace(work.apply(*moves.moved((), rows), rows), moved=None)

    def update(self, local: Node, records: Iterable[NodeRecord], moves: Moves) -> ClusterIndex:
        """The index of `records` seen from `local`, from this one: only changed records are looked at
        (what changed comes from `moves`, the agent's)."""
        if local != self.local:
            return ClusterIndex.build(local, records, moves)
        rows = tuple(records)
        went, came = moves.moved(self.records, rows)
        if not went and not came:
            return self
        return _Work.start(self).apply(went, came, rows)


@dataclass
class _Work:
    """One update in progress: copies of the index's parts, changed name by name."""

    base: ClusterIndex
    by_name: dict[str, tuple[NodeRecord, ...]]
    members: dict[str, Node]
    covering: dict[str, tuple[str, Problem]]
    partners: dict[str, frozenset[str]]
    spatial: Spatial
    sharing: Sharing
    outside: set[str]
    clashing: set[str]
    moved: set[str] = field(default_factory=set)  # names whose member changed

    @classmethod
    def start(cls, base: ClusterIndex) -> _Work:
        return cls(
            base, dict(base.by_name), dict(base.members), dict(base.covering), dict(base.partners),
            base.spatial.copy(), base.sharing.copy(), set(base.outside), set(base.clashing),
        )  # fmt: skip

    def apply(
        self, went: Sequence[NodeRecord], came: Sequence[NodeRecord], records: tuple[NodeRecord, ...]
    ) -> ClusterIndex:
        """Look again at the names of the records that went and came (`records`: all of them now)."""
        gone = set(map(id, went))
        added: dict[str, list[NodeRecord]] = {}
        for record in came:
            added.setdefault(record.name, []).append(record)
        for name in {r.name for r in went} | added.keys():
            held = [r for r in self.by_name.get(name, ()) if id(r) not in gone]
            self.set_name(name, (*held, *added.get(name, ())))
        return self.finish(records)

    def set_name(self, name: str, held: tuple[NodeRecord, ...]) -> None:
        if held:
            self.by_name[name] = held
        else:
            self.by_name.pop(name, None)
        local = self.base.local
        if name == local.name:  # records of our name are not peers; our own node stands for it
            node: Node | None = local if self.base.own_usable is None else None
        else:
            distinct = held if len(held) == 1 else set(held)  # one record: no hashing of it
            (only,) = distinct if len(distinct) == 1 else (None,)
            node = only if isinstance(only, Node) else None
        if held and node is None and name != local.name:
            self.outside.add(name)
        else:
            self.outside.discard(name)
        old = self.members.get(name)
        if old is node:
            return
        self.moved.add(name)
        if old is not None:
            self._leave(old)
        if node is not None:
            self._join(node)

    def _leave(self, node: Node) -> None:
        del self.members[node.name]
        self.sharing.leave(node)
        if self.covering.pop(node.name, None) is not None:
            return
        self.spatial.remove(node)
        self.clashing.discard(node.name)
        for other in self.partners.pop(node.name, frozenset()):
            self._partner(other, self.partners[other] - {node.name})

    def _join(self, node: Node) -> None:
        self.members[node.name] = node
        self.sharing.join(node)
        cover = self_cover(node)
        if cover is not None:
            self.covering[node.name] = cover
            return
        found = frozenset(self.spatial.clashing(node))
        self.spatial.add(node)
        self._partner(node.name, found)
        for other in found:
            self._partner(other, self.partners[other] | {node.name})

    def _partner(self, name: str, others: frozenset[str]) -> None:
        self.partners[name] = others
        (self.clashing.add if others else self.clashing.discard)(name)

    def finish(self, records: tuple[NodeRecord, ...]) -> ClusterIndex:
        base = self.base
        view = _view(base.local, base.own_usable, self)
        return ClusterIndex(
            view, base.local, base.own_usable, records, self.by_name, self.members, self.covering,
            self.partners, self.spatial, self.sharing, frozenset(self.moved), frozenset(self.outside),
            frozenset(self.clashing),
        )  # fmt: skip


def _view(local: Node, own_usable: str | None, work: _Work) -> ClusterView:
    """The ClusterView, in the order and with the wording of `cluster_view`."""
    by_name, members, covering = work.by_name, work.members, work.covering
    remotes = _remotes(local.name, work)
    problems = _record_problems(work.outside, by_name)
    excluded: dict[str, str] = {}
    if own_usable is not None:
        excluded[local.name] = own_usable
        problems.append(Problem("local-node-unusable", (local.name,), own_usable))
    dup_keys, copiers, key_problems = duplicate_keys(work.sharing.key_sharers(members))
    dup_macs, mac_problems = duplicate_macs(work.sharing.mac_sharers(members))
    for name in sorted(covering):
        excluded[name] = covering[name][0]
    clash_out, clash_problems = resolve_clashes([members[name] for name in sorted(work.clashing)])
    excluded.update(clash_out)
    return ClusterView(
        remotes=remotes,
        duplicate_keys=dup_keys,
        key_copiers=MappingProxyType(copiers),
        duplicate_macs=dup_macs,
        excluded=MappingProxyType(excluded),
        problems=(
            *problems, *key_problems, *mac_problems, *(covering[n][1] for n in sorted(covering)),
            *clash_problems,
        ),
    )  # fmt: skip


def _remotes(me: str, work: _Work) -> tuple[Node, ...]:
    """The members but us, by name: the last ones with the members that moved put in or out of place."""
    members, last = work.members, list(work.base.view.remotes)
    if len(work.moved) * 8 > len(members):
        return tuple(members[name] for name in sorted(members) if name != me)
    for name in sorted(work.moved - {me}):
        i = bisect.bisect_left(last, name, key=_name)
        if i < len(last) and last[i].name == name:
            del last[i]
        if name in members:
            last.insert(i, members[name])
    return tuple(last)


def _name(node: Node) -> str:
    return node.name


def _record_problems(outside: set[str], by_name: Mapping[str, tuple[NodeRecord, ...]]) -> list[Problem]:
    """Duplicate names and invalid records, by name (names of members are neither)."""
    problems: list[Problem] = []
    for name in sorted(outside):
        one_record(name, set(by_name[name]), problems)
    return problems
