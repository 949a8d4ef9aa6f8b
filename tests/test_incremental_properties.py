"""Incremental planning equals full planning: after any sequence of node adds, changes and removals,
invalid records and MeshConfig changes, `replan` from the previous plan gives exactly what `plan` gives from
scratch; and it decides again only the pairs a change touches."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from keys.values import PublicKey
from meshd.agent.passes import PlanMemo
from meshd.core.incremental import Planned, replan
from meshd.core.model import (
    Endpoint,
    InvalidNode,
    LocalNode,
    MeshConfig,
    Node,
    NodeRecord,
    Snapshot,
    Transport,
)
from meshd.core.moves import Moves
from meshd.core.planner import plan
from meshd.core.state import DeviceNames
from tests.fakes.actual import actual_of
from tests.support.clusters import SETTINGS, configs, nodes
from tests.told import told_exactly

KEY_POOL = 12  # small: keys sometimes collide, so duplicate-key facts come and go
STEPS = st.sampled_from(["add", "change", "change", "remove", "config", "invalid", "local"])


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[tuple[NodeRecord, ...], MeshConfig]]:
    """A cluster's successive snapshots: node-00 is always there (the local node)."""
    members: dict[int, NodeRecord] = {i: draw(nodes(i, KEY_POOL)) for i in range(draw(st.integers(1, 6)))}
    config = draw(configs())
    history = [(tuple(members.values()), config)]
    for _ in range(draw(st.integers(1, 8))):
        step, index = draw(STEPS), draw(st.integers(1, 10))
        if step == "config":
            config = draw(configs())
        elif step == "local":
            members[0] = draw(nodes(0, KEY_POOL))
        elif step == "remove":
            members.pop(index, None)
        elif step == "invalid":
            members[index] = InvalidNode(f"node-{index:02d}", "bad-public-key", "public key is not base64")
        else:  # add, or change (a new record under a name that may exist)
            members[index] = draw(nodes(index, KEY_POOL))
        history.append((tuple(members.values()), config))
    return history


def _local(records: tuple[NodeRecord, ...]) -> LocalNode:
    (me,) = (r for r in records if isinstance(r, Node) and r.name == "node-00")
    return LocalNode(me, wireguard_available=Transport.WIREGUARD in me.capabilities)


@given(histories())
@SETTINGS
def test_incremental_plan_equals_full_plan_after_any_history(
    history: list[tuple[tuple[NodeRecord, ...], MeshConfig]],
) -> None:
    moves = Moves()
    previous: Planned | None = None
    for records, config in history:
        snapshot, local = Snapshot.of(records, config), _local(records)
        before, previous = previous, replan(previous, snapshot, local, moves)
        assert previous.state == plan(snapshot, local)
        if before is not None:  # what it says moved (meshd.core.moves) is what moved
            for table in ("pairs", "peers", "fdb", "neighbors", "routes"):
                got, want = getattr(before.state, table), getattr(previous.state, table)
                assert got is want or moves.told(got, want) is None or told_exactly(moves, got, want)


def _node(i: int) -> Node:
    underlay = ipaddress.ip_address(f"198.18.1.{i + 1}")
    return Node(
        f"n{i:03d}",
        underlay,
        (ipaddress.ip_network(f"198.19.{i}.0/24"),),
        public_key=PublicKey(bytes([i + 1]) * 32),
        endpoint=Endpoint(underlay, 51820),
        vxlan_mac=f"02:00:00:00:02:{i:02x}",
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
    )


def test_a_change_to_one_node_decides_only_its_pair_and_a_shared_fact_decides_every_pair_it_touches() -> None:
    moves = Moves()
    cluster = [_node(i) for i in range(40)]
    local = LocalNode(cluster[0])
    first = replan(None, Snapshot.of(cluster), local, moves)
    assert first.decided == 39

    relabelled = [*cluster[:5], replace(cluster[5], labels=(("pool", "x"),)), *cluster[6:]]
    assert replan(first, Snapshot.of(relabelled), local, moves).decided == 1
    added = replan(first, Snapshot.of([*cluster, _node(40)]), local, moves)
    assert (added.decided, len(added.state.pairs)) == (1, 40)
    removed = replan(first, Snapshot.of(cluster[:-1]), local, moves)
    assert (removed.decided, len(removed.state.pairs)) == (0, 38)
    for records, planned in ((relabelled, None), ([*cluster, _node(40)], added), (cluster[:-1], removed)):
        again = planned or replan(first, Snapshot.of(records), local, moves)
        assert again.state == plan(Snapshot.of(records), local), "what a change leaves and brings"

    # node 7 takes node 9's key: both lose WireGuard, nobody else is touched
    copied = [*cluster[:7], replace(cluster[7], public_key=cluster[9].public_key), *cluster[8:]]
    after = replan(first, Snapshot.of(copied), local, moves)
    assert after.decided == 2
    assert after.state == plan(Snapshot.of(copied), local)
    assert {p.node for p in after.state.pairs if p.transport is not Transport.WIREGUARD} == {"n007", "n009"}

    # a MeshConfig change decides every pair again
    assert (
        replan(first, Snapshot.of(cluster, replace(MeshConfig(), generation=2)), local, moves).decided == 39
    )


def test_the_pass_memo_replans_incrementally_and_skips_the_diff_of_an_unchanged_kernel() -> None:
    cluster = [_node(i) for i in range(10)]
    memo, local, names = PlanMemo(Moves()), LocalNode(cluster[0]), DeviceNames()
    desired = memo.plan(Snapshot.of(cluster), local, names)
    assert memo.plan(Snapshot.of(cluster), local, names) is desired, "nothing changed: nothing planned"
    grown = memo.plan(Snapshot.of([*cluster, _node(10)]), local, names)
    assert grown == plan(Snapshot.of([*cluster, _node(10)]), local, names=names)
    assert memo.diff(grown, actual_of(grown))[0] == (), "the kernel holds the plan"
    behind = actual_of(desired)  # a full read that is a new object, equal to the last one: same answer
    actions, seen = memo.diff(grown, behind)
    assert actions and seen is behind
    assert memo.diff(grown, actual_of(desired)) == (actions, behind), "not diffed again, the view kept"
    again, view = memo.diff(grown, actual_of(desired))
    assert again is actions and view is behind


def test_bursts_of_nodes_coming_going_and_changing_plan_as_from_scratch() -> None:
    """Several nodes at once (a burst of adds, deletes, relabels, and now and then a shared key that
    changes a cluster-wide fact), over many steps: each plan from the last equals the plan from scratch."""
    moves = Moves()
    for seed in range(60):
        rng = random.Random(seed)
        nodes = {i: _node(i) for i in range(12)}
        local = LocalNode(nodes[0])
        previous: Planned | None = None
        for _ in range(10):
            for _ in range(rng.randrange(1, 5)):
                i = rng.randrange(1, 24)
                if i in nodes and rng.random() < 0.4:
                    del nodes[i]
                elif i in nodes and rng.random() < 0.1:
                    nodes[i] = replace(nodes[i], public_key=nodes[rng.choice(sorted(nodes))].public_key)
                elif i in nodes:
                    nodes[i] = replace(nodes[i], labels=(("pool", str(rng.randrange(3))),))
                else:
                    nodes[i] = _node(i)
            snapshot = Snapshot.of(list(nodes.values()))
            previous = replan(previous, snapshot, local, moves)
            assert previous.state == plan(snapshot, local), f"seed {seed}"
