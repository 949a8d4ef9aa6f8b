"""How passes are reported: health (what /readyz says), metrics, and each warning once in the log."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from meshd.agent.guards import report_guards
from meshd.agent.health import Health
from meshd.agent.metrics import Metrics
from meshd.core import actions as a
from meshd.core.model import InvalidNode, NodeRecord
from meshd.core.moves import Moves
from meshd.core.state import ActualState, DesiredState

log = logging.getLogger(__name__)


@dataclass
class Report:
    metrics: Metrics
    health: Health
    moves: Moves  # the agent's: which records came since the last report
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _violations: set[str] = field(default_factory=set)  # Required violations reported (meshd.core.guard)
    _reported: tuple[DesiredState, ActualState] | None = None  # what `planned` last reported on
    _records: tuple[NodeRecord, ...] = ()  # the records `planned` last reported on

    def started(self) -> None:
        self.metrics.reconciles.inc()

    def datastore(self, *, synced: bool, failure: str | None, config_error: str | None) -> bool:
        """Report the datastore's state; True when its view is complete enough to act on."""
        self.health.synced = synced and failure is None
        if failure is not None:
            self.warn_once("datastore", f"the datastore stopped: {failure}")
        self.metrics.config_rejected.set(0 if config_error is None else 1)
        self.health.warning = None if config_error is None else f"MeshConfig rejected: {config_error}"
        if config_error is not None:
            self.warn_once(
                "meshconfig", f"rejected MeshConfig, the previous one stays in force: {config_error}"
            )
        if not synced:  # never act on a partial view: a default MeshConfig could mean cleartext
            self.health.detail = "waiting for the datastore's first full sync"
            log.info("%s", self.health.detail)
        return synced

    def waiting_for_own_record(self) -> None:
        self.health.last_pass_ok = False
        self.health.detail = "waiting for our own node record (underlay address and pod CIDRs)"
        log.info("%s", self.health.detail)

    def planned(
        self, records: tuple[NodeRecord, ...], desired: DesiredState, actual: ActualState, *, encryption: bool
    ) -> None:
        last = self._reported
        if last is not None and last[0] is desired and last[1] is actual:
            return  # the same plan against the same view: all of this was said already
        self._reported = (desired, actual)
        self.metrics.observe_plan(desired, records, self.moves, encryption=encryption)
        _, came = self.moves.moved(self._records, records)  # each record's warning was given when it came
        self._records = records
        for rec in came:
            if isinstance(rec, InvalidNode):
                self.warn_once(rec.name, f"node {rec.name or '?'} is not usable as a peer: {rec.detail}")
        for problem in desired.problems:
            if problem.kind != "invalid-node":
                self.warn_once(problem.kind, problem.detail)
        report_guards(self.metrics, desired, actual, self._violations)
        for route in actual.foreign_routes:
            self.warn_once(
                "foreign-route", f"route {route.dst} dev {route.dev} is not ours and overlaps a pod CIDR"
            )

    def applied(self, actions: Sequence[a.Action]) -> None:
        if not actions:
            log.debug("no change")
        for kind, n in Counter(type(x).__name__ for x in actions).items():
            self.metrics.drift.labels(kind=kind).inc(n)

    def passed(self, *, failure: str | None, seconds: float) -> None:
        self.health.last_pass_ok = True
        self.health.detail = "ok" if failure is None else f"the datastore stopped: {failure}"
        self.metrics.duration.observe(seconds)

    def failed(self, phase: str, error: BaseException, *, retry_in: float) -> None:
        self.metrics.errors.labels(phase=phase).inc()
        self.health.last_pass_ok = False
        self.health.detail = f"last pass failed in {phase}"
        log.error("reconcile failed (%s); retrying in %.1fs", error, retry_in)

    def warn_once(self, key: str, message: str) -> None:
        if (key, message) not in self._warned:
            self._warned.add((key, message))
            log.warning("%s", message)
