"""The indexed conflict search equals the full one: after any sequence of node adds, changes, removals,
invalid and duplicate-named records and changes of the local node, `ClusterIndex.update` from the previous
index gives exactly the ClusterView that `cluster_view` finds from scratch (so every agent still reaches
the same verdict about every pair); and an update never changes the index it started from."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.core.cluster_index import ClusterIndex
from meshd.core.conflicts import cluster_view
from meshd.core.model import InvalidNode, Node, NodeRecord
from meshd.core.moves import Moves
from tests.support.clusters import SETTINGS, nodes

KEY_POOL = 6  # keys collide often: duplicate and copied keys come and go
STEPS = st.sampled_from(["add", "change", "change", "remove", "invalid", "twin", "local", "same"])


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[Node, tuple[NodeRecord, ...]]]:
    """Successive (local node, records) pairs; the records may hold a record of the local node's name."""
    members: dict[int, NodeRecord] = {i: draw(nodes(i, KEY_POOL)) for i in range(draw(st.integers(1, 8)))}
    extra: list[NodeRecord] = []
    local = draw(nodes(0, KEY_POOL))
    history = [(local, tuple(members.values()))]
    for _ in range(draw(st.integers(1, 10))):
        step, index = draw(STEPS), draw(st.integers(0, 12))
        if step == "local":
            local = draw(nodes(0, KEY_POOL))
        elif step == "remove":
            members.pop(index, None)
            extra.clear()
        elif step == "invalid":
            members[index] = InvalidNode(f"node-{index:02d}", "bad-public-key", "public key is not base64")
        elif step == "twin":  # a second, different record under an existing name
            extra.append(draw(nodes(index, KEY_POOL)))
        elif step == "same":  # the same record decoded again: equal, not the same object
            rec = members.get(index)
            members[index] = (
                replace(rec) if isinstance(rec, Node) else InvalidNode(f"node-{index:02d}", "x", "y")
            )
        else:
            members[index] = draw(nodes(index, KEY_POOL))
        history.append((local, (*members.values(), *extra)))
    return history


@given(histories())
@SETTINGS
def test_the_index_finds_what_the_full_search_finds_after_any_history(
    history: list[tuple[Node, tuple[NodeRecord, ...]]],
) -> None:
    moves = Moves()
    index: ClusterIndex | None = None
    for local, records in history:
        before = index.view if index is not None else None
        index = (
            ClusterIndex.build(local, records, moves)
            if index is None
            else index.update(local, records, moves)
        )
        full = cluster_view(local, records)
        assert index.view == full
        assert index.view.problems == full.problems  # the same problems, in the same order
        assert list(index.view.excluded.items()) == list(full.excluded.items())
        assert index.clashing == {
            name for name, others in index.partners.items() if others
        }  # kept, not found
        if before is not None:
            assert before == history_view(history, before)


def history_view(history: list[tuple[Node, tuple[NodeRecord, ...]]], view: object) -> object:
    """The view an index held before an update is still a view of some step: updates copy, never change."""
    for local, records in history:
        full = cluster_view(local, records)
        if full == view:
            return full
    return None


@given(histories())
@settings(max_examples=30, deadline=None)
def test_updating_twice_from_one_index_gives_the_same_answer(
    history: list[tuple[Node, tuple[NodeRecord, ...]]],
) -> None:
    moves = Moves()
    (local, records), later = history[0], history[1:]
    index = ClusterIndex.build(local, records, moves)
    for next_local, next_records in later:
        first = index.update(next_local, next_records, moves)
        assert index.update(next_local, next_records, moves).view == first.view
        assert index.view == cluster_view(local, records), "the index updated from is unchanged"


def test_a_member_whose_only_clash_left_is_no_longer_among_the_clashing() -> None:
    moves = Moves()
    from tests.test_incremental_properties import _node

    nodes = [_node(i) for i in range(4)]
    overlapping = replace(nodes[3], pod_cidrs=nodes[2].pod_cidrs)  # clashes with node 2
    index = ClusterIndex.build(nodes[0], [*nodes[:3], overlapping], moves)
    assert index.clashing == {"n002", "n003"}
    index = index.update(nodes[0], nodes[:3], moves)
    assert index.clashing == set() and index.view == cluster_view(nodes[0], nodes[:3])
