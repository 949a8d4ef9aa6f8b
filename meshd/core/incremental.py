"""Incremental planning: the next plan from the last one, deciding again only the pairs a change touches.
Pure: the last plan goes in, the next one comes out, and `replan(...).state` always equals
`plan(snapshot, local, names=names)` (the property test in tests/test_properties.py holds them equal).

Cluster-wide conflicts (duplicate keys and MACs, overlapping pod CIDRs, invalid records) are global facts:
`ClusterIndex` keeps them current from the records that changed, with the verdicts `cluster_view` reaches
over the whole snapshot. A pair is decided again only when the peer's
record, the facts about either node (`ClusterView.facts`), the MeshConfig, the local node or the device
names changed; so a change that alters a cluster-wide fact decides again every pair that fact touches.
Unchanged peers keep their decoded record and their decision: shared, not copied. While the facts hold,
only the members the conflict index saw change are looked at (not the 5000 of the cluster).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from types import MappingProxyType

from meshd.core.assembly import NO_TABLES, Part, Tables, retable, tables
from meshd.core.cluster_index import ClusterIndex
from meshd.core.conflicts import ClusterView
from meshd.core.model import LocalNode, MeshConfig, Node, Snapshot
from meshd.core.moves import Moves, exactly
from meshd.core.pairs import decide_pair
from meshd.core.planner import DEFAULT_NAMES, assemble, pair_part, plan_context
from meshd.core.state import DesiredState, DeviceNames
from meshd.core.transport import PairPlan, PlanContext

Decided = tuple[Node, tuple[object, ...], PairPlan, Part]
_DECISION, _PART, _NAME = itemgetter(2), itemgetter(3), attrgetter("name")
"""A peer's record, the cluster-wide facts about it, the decision made from them, and the pair's part."""


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan and what it was decided from, for the next `replan`."""

    state: DesiredState
    context: tuple[object, ...]  # MeshConfig, local node, device names, the facts about the local node
    pairs: Mapping[str, Decided]  # peer name -> its decision, in the order of the view's remotes
    decided: int = 0  # pairs decided afresh by this plan (the rest were reused)
    index: ClusterIndex | None = None  # the conflict search's indexes, for the next plan
    tables: Tables = NO_TABLES  # the union of the pairs' parts (meshd.core.assembly)


def replan(
    previous: Planned | None,
    snapshot: Snapshot,
    local: LocalNode,
    moves: Moves,
    *,
    names: DeviceNames = DEFAULT_NAMES,
) -> Planned:
    """The plan for `snapshot`, reusing the decisions of `previous` whose inputs did not change.
    `moves` (the agent's) says which records changed, and is told which tables did."""
    index = previous.index if previous is not None else None
    index = (
        ClusterIndex.build(local.node, snapshot.nodes, moves)
        if index is None
        else index.update(local.node, snapshot.nodes, moves)
    )
    view = index.view
    context = (snapshot.config, local, names, view.facts(local.node))
    last: Mapping[str, Decided] = {}
    if previous is not None and previous.context == context:
        last = previous.pairs
    same_facts = (
        previous is not None and previous.index is not None and _facts(previous.index.view) == _facts(view)
    )
    decide = _Decide(local, snapshot.config, view, plan_context(local, snapshot.config, names), same_facts)
    looked = _looked_at(previous, index) if last and same_facts else None
    if looked is None:
        pairs = {peer.name: decide(peer, last.get(peer.name)) for peer in view.remotes}
        decide.gone.extend(last[name] for name in last.keys() - pairs.keys())
    else:  # only the members that changed can be decided again: the others keep their pair
        pairs = _merged(decide, last, index, looked)
    came, gone = decide.came, decide.gone
    parts = list(map(_PART, pairs.values()))
    if previous is None or not last:
        done = tables(parts)
    else:
        done = retable(previous.tables, list(map(_PART, gone)), list(map(_PART, came)), parts, moves)
    state = assemble(list(map(_DECISION, pairs.values())), parts, done, decide.ctx, view)
    if previous is not None and last:
        went_now, came_now = (tuple(d[2].decision for d in group) for group in (gone, came))
        moves.tell(previous.state.pairs, state.pairs, *exactly(went_now, came_now))
    return Planned(state, context, MappingProxyType(pairs), len(came), index, done)


@dataclass
class _Decide:
    """Decides one pair again, or keeps its last decision when its inputs are unchanged; collects the
    pairs decided afresh (`came`) and the last ones they replaced or that are gone (`gone`)."""

    local: LocalNode
    config: MeshConfig
    view: ClusterView
    ctx: PlanContext
    same_facts: bool
    came: list[Decided] = field(default_factory=list)
    gone: list[Decided] = field(default_factory=list)

    def __call__(self, peer: Node, kept: Decided | None) -> Decided:
        if kept is not None and kept[0] is peer and self.same_facts:  # its record and every fact as they were
            return kept
        facts = self.view.facts(peer)
        if kept is not None and (kept[0] is peer or kept[0] == peer) and kept[1] == facts:
            return kept
        decision = decide_pair(self.local, peer, config=self.config, view=self.view)
        new = (peer, facts, decision, pair_part(decision, self.ctx))
        self.came.append(new)
        if kept is not None:
            self.gone.append(kept)
        return new


def _looked_at(previous: Planned | None, index: ClusterIndex) -> frozenset[str] | None:
    """The names whose member may differ from the one `previous` decided for (None: any)."""
    if previous is None or previous.index is None:
        return None
    if index is previous.index:
        return frozenset()
    return index.moved  # `index` was updated from `previous.index`: these members changed


def _merged(
    decide: _Decide, last: Mapping[str, Decided], index: ClusterIndex, looked: frozenset[str]
) -> dict[str, Decided]:
    """The pairs: the last ones, with those of the `looked` names decided again or gone, in the order
    of the view's remotes."""
    fresh: dict[str, Decided] = {}
    for name in sorted(looked - {index.local.name}):
        peer, kept = index.members.get(name), last.get(name)
        if peer is not None:
            fresh[name] = decide(peer, kept)
        elif kept is not None:
            decide.gone.append(kept)
    merged = {**last, **fresh}
    order = list(map(_NAME, decide.view.remotes))
    return dict(zip(order, map(merged.__getitem__, order), strict=True))


def _facts(view: ClusterView) -> tuple[object, ...]:
    """The cluster-wide facts a pair's facts are read from (ClusterView.facts)."""
    return (view.excluded, view.key_copiers, view.duplicate_keys, view.duplicate_macs)
