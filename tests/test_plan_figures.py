"""The metrics a plan sets, followed from plan to plan (only the decisions and records that came and went
are looked at), equal the metrics set from the last plan alone, after any history: peers per transport,
meshd_peer_encrypted per peer (gone peers gone), invalid records per reason."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry

from meshd.agent.metrics import Metrics
from meshd.agent.plan_figures import PlanFigures
from meshd.core.model import InvalidNode, NodeRecord, Transport
from meshd.core.moves import Moves
from meshd.core.state import DesiredState, PairDecision


def _samples(metrics: Metrics) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name.startswith(("meshd_peers", "meshd_peer_encrypted", "meshd_invalid", "meshd_required_un"))
    }


def _next(
    rng: random.Random, pairs: list[PairDecision], records: list[NodeRecord]
) -> tuple[list[PairDecision], list[NodeRecord]]:
    """Some decisions and records replaced, added or dropped; the rest shared (as the planner and the
    datastore share them); now and then a name held twice."""
    pairs, records = list(pairs), list(records)
    for _ in range(rng.randrange(4)):
        name = f"n{rng.randrange(8)}"
        decision = PairDecision(name, rng.choice(list(Transport)), "r")
        at = next((i for i, p in enumerate(pairs) if p.node == name), None)
        if at is None or rng.random() < 0.05:
            pairs.insert(rng.randrange(len(pairs) + 1), decision)
        elif rng.random() < 0.3:
            del pairs[at]
        else:
            pairs[at] = decision
    for _ in range(rng.randrange(3)):
        if records and rng.random() < 0.4:
            del records[rng.randrange(len(records))]
        else:
            records.append(InvalidNode(f"x{rng.randrange(5)}", rng.choice("ab"), "d"))
    return pairs, records


def test_metrics_followed_from_plan_to_plan_equal_the_last_plan_alone() -> None:
    moves = Moves()
    for seed in range(300):
        rng = random.Random(seed)
        followed = Metrics(CollectorRegistry())
        pairs: list[PairDecision] = []
        records: list[NodeRecord] = []
        for step in range(15):
            pairs, records = _next(rng, pairs, records)
            state, recs = DesiredState(pairs=tuple(pairs)), tuple(records)
            followed.observe_plan(state, recs, moves, encryption=True)
            alone = Metrics(CollectorRegistry())
            alone.observe_plan(state, recs, Moves(), encryption=True)
            assert _samples(followed) == _samples(alone), f"seed {seed} step {step}"


def test_plan_figures_followed_equal_the_whole_figures() -> None:
    moves = Moves()
    for seed in range(300):
        rng = random.Random(seed)
        figures = PlanFigures()
        pairs: list[PairDecision] = []
        records: list[NodeRecord] = []
        for _ in range(15):
            pairs, records = _next(rng, pairs, records)
            figures.follow(tuple(pairs), tuple(records), moves)
            whole = PlanFigures.whole(tuple(pairs), tuple(records))
            assert (figures.transports, figures.encrypted, figures.invalid) == (
                whole.transports,
                whole.encrypted,
                whole.invalid,
            ), f"seed {seed}"
