"""The figures the metrics take from a plan (peers per transport, whether each peer is encrypted, invalid
records per reason), followed from one plan to the next: only the decisions and records that came and
went are looked at (meshd.core.moves), not the 5000 of the cluster. `PlanFigures.follow` always leaves
the figures that `PlanFigures.whole` computes (tests/test_plan_figures.py holds them equal)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshd.core.model import InvalidNode, NodeRecord, Transport
from meshd.core.moves import Moves
from meshd.core.state import PairDecision

Encrypted = dict[str, int]
"""Peer name -> 1 when its pod traffic goes over WireGuard, else 0."""


@dataclass
class PlanFigures:
    pairs: tuple[PairDecision, ...] = ()
    records: tuple[NodeRecord, ...] = ()
    transports: Counter[Transport] = field(default_factory=Counter)
    encrypted: Encrypted = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)  # invalid records by reason

    @classmethod
    def whole(cls, pairs: tuple[PairDecision, ...], records: tuple[NodeRecord, ...]) -> PlanFigures:
        figures = cls(pairs, records)
        figures.transports.update(p.transport for p in pairs)
        figures.encrypted.update(_encrypted(pairs))
        figures.invalid.update(r.reason for r in records if isinstance(r, InvalidNode))
        return figures

    def follow(
        self, pairs: tuple[PairDecision, ...], records: tuple[NodeRecord, ...], moves: Moves
    ) -> set[str] | None:
        """Follow to this plan (`moves`, the agent's, says what moved); the peers whose `encrypted` value
        may have changed (None: any)."""
        went, came = moves.moved(self.pairs, pairs)
        self.pairs = pairs
        self.transports.subtract(p.transport for p in went)
        self.transports.update(p.transport for p in came)
        touched: set[str] | None = {p.node for p in (*went, *came)}
        for decision in went:
            self.encrypted.pop(decision.node, None)
        self.encrypted.update(_encrypted(came))
        if len(self.encrypted) != len(pairs):  # a name held by two decisions: the last one counts
            self.encrypted, touched = dict(_encrypted(pairs)), None
        gone, new = moves.moved(self.records, records)
        self.records = records
        self.invalid.subtract(r.reason for r in gone if isinstance(r, InvalidNode))
        self.invalid.update(r.reason for r in new if isinstance(r, InvalidNode))
        return touched


def _encrypted(pairs: Iterable[PairDecision]) -> Iterable[tuple[str, int]]:
    return ((p.node, 1 if p.transport is Transport.WIREGUARD else 0) for p in pairs)
