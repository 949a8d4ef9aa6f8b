"""The reconcile loop: a Scheduler decides when a pass runs (dirty flag, resync tick, retries), one
ReconcilePass decides what it does. Built once per agent; everything it reports goes through the Report
(health, metrics, warnings) and the MeshView (/status, per-peer metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from meshd.agent.health import Health
from meshd.agent.kernel_events import KernelEvents
from meshd.agent.kernel_view import KernelView, Read
from meshd.agent.metrics import Metrics
from meshd.agent.passes import AfterPass, PassDatastore, PassError, PlanMemo, ReconcilePass, RotationHook
from meshd.agent.report import Report
from meshd.agent.scheduler import Scheduler
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.model import IPAddress
from meshd.core.moves import Moves
from meshd.core.ports import Dataplane
from meshd.core.state import WireGuardReading
from meshd.retry import Backoff

__all__ = ["PassError", "Reconciler"]


@dataclass
class Reconciler:
    datastore: PassDatastore
    dataplane: Dataplane
    identity: Identity
    metrics: Metrics
    health: Health
    moves: Moves
    """The agent's (meshd.core.moves): what changed between versions of its tables, told by the producers
    (the datastore's records, the plan, the kernel folds) to the followers (the diff, the report)."""
    view: MeshView | None = None
    """Where /status and the per-peer metrics read the last pass; None: a private one."""
    underlay_mtu: Callable[[IPAddress], Awaitable[int]] | None = None  # None: assume 1500
    resync: float = 30.0
    full_every: int = 10
    """Every this many resyncs reads the whole kernel (the others read the WireGuard peers)."""
    retry: Backoff = field(default_factory=Backoff)
    after_pass: AfterPass | None = None
    after_publish: AfterPass | None = None
    events: KernelEvents | None = None
    """The kernel's notifications, keeping the view current between full reads; None: read each time."""
    rotation: RotationHook | None = None
    _pass: ReconcilePass = field(init=False)
    _scheduler: Scheduler = field(init=False)

    def __post_init__(self) -> None:
        report = Report(self.metrics, self.health, self.moves)
        self._pass = ReconcilePass(
            datastore=self.datastore,
            dataplane=self.dataplane,
            identity=self.identity,
            kernel=KernelView(
                self.dataplane.observe,
                self.underlay_mtu,
                self.events,
                _device(self.dataplane),
                moves=self.moves,
            ),
            report=report,
            view=self.view or MeshView(self.identity),
            memo=PlanMemo(self.moves),
            after_pass=self.after_pass,
            after_publish=self.after_publish,
            rotation=self.rotation,
        )
        self._scheduler = Scheduler(
            run_pass=self._pass,
            wait_changed=self.datastore.wait_changed,
            on_failure=lambda exc, delay: report.failed(exc.phase, exc, retry_in=delay),
            resync=self.resync,
            backoff=self.retry,
            full_every=self.full_every,
        )
        if self.events is not None:
            self.events.on_repair = self.trigger  # a deleted entry of ours is put back at once

    @property
    def full_reads(self) -> int:
        """How many passes read the whole kernel state (the others carried the last view on)."""
        return self._pass.kernel.full_reads

    def trigger(self) -> None:
        self._scheduler.trigger()

    async def run(self, stop: asyncio.Event) -> None:
        await self._scheduler.run(stop)

    async def reconcile_once(self, *, full: bool = True) -> bool:
        """One pass now, outside the schedule (tests, tools). Raises PassError naming the failed phase."""
        return await self._pass(Read.FULL if full else Read.KEPT)


def _device(dataplane: Dataplane) -> Callable[[], Awaitable[WireGuardReading | None]] | None:
    """How the resync reads the WireGuard device alone (None: no WireGuard backend)."""
    wireguard = dataplane.wireguard
    return wireguard.observe_device if wireguard is not None else None
