"""The reconcile loop: every trigger marks one dirty flag; a pass snapshots, observes, plans, diffs, applies
and publishes. Level-triggered: state is recomputed from the whole snapshot every time. It wires; the
planner and diff decide."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from meshd.agent.dataplane import Dataplane
from meshd.agent.guards import report_guards
from meshd.agent.http import Health
from meshd.agent.metrics import Metrics
from meshd.core import actions as a
from meshd.core.diff import diff
from meshd.core.local import Identity, annotations_to_publish, local_node
from meshd.core.model import EncryptionMode, InvalidNode, IPAddress, LocalNode, MeshConfig, Node
from meshd.core.planner import plan
from meshd.core.ports import Datastore
from meshd.core.state import ActualState, DesiredState, ObservedPeer
from meshd.core.status import status_document

log = logging.getLogger(__name__)


class PassError(Exception):
    def __init__(self, phase: str, cause: BaseException) -> None:
        super().__init__(f"{phase}: {cause}")
        self.phase = phase


@dataclass
class Reconciler:
    datastore: Datastore
    dataplane: Dataplane
    identity: Identity
    metrics: Metrics
    health: Health
    underlay_mtu: Callable[[IPAddress], Awaitable[int]] | None = None  # None: assume 1500
    resync: float = 30.0
    after_pass: Callable[[LocalNode, DesiredState], Awaitable[None]] | None = (
        None  # e.g. write the CNI config
    )
    backoff_cap: float = 30.0
    applied_generation: int | None = None
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _full: bool = True  # the next pass observes the kernel (resync timer, after a change or a failure)
    _quiet: tuple[ActualState, int] | None = None  # kernel view + underlay MTU of the last no-op pass
    _config: MeshConfig = field(default_factory=MeshConfig)
    _failures: int = 0
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _violations: set[str] = field(default_factory=set)  # Required violations reported (meshd.core.guard)
    _last: tuple[DesiredState, ActualState] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def trigger(self) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.health.status = self.status
        self.health.refresh = self.refresh_metrics
        tasks = [
            asyncio.create_task(self._watch(), name="watch"),
            asyncio.create_task(self._tick(), name="tick"),
        ]
        self._dirty.set()
        try:
            while not stop.is_set():
                await _first(self._dirty.wait(), stop.wait())
                if stop.is_set():
                    break
                self._dirty.clear()
                full, self._full = self._full, False
                await self._pass_with_backoff(stop, full=full)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _watch(self) -> None:
        while True:
            await self.datastore.wait_changed()
            self._dirty.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            self._full = True
            self._dirty.set()

    async def _pass_with_backoff(self, stop: asyncio.Event, *, full: bool) -> None:
        try:
            changed = await self.reconcile_once(full=full)
        except PassError as exc:
            self._failures += 1
            self._quiet, self._full = None, True
            self.metrics.errors.labels(phase=exc.phase).inc()
            self.health.last_pass_ok = False
            self.health.detail = f"last pass failed in {exc.phase}"
            delay = min(self.backoff_cap, 0.5 * 2 ** min(self._failures, 10)) * random.uniform(0.8, 1.2)
            log.error("reconcile failed (%s); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            self._dirty.set()
            return
        self._failures = 0
        if changed:
            self._full = True
            self._dirty.set()  # verify: the next pass must find nothing to do (and learns new MACs)

    async def reconcile_once(self, *, full: bool = True) -> bool:
        """One pass. Returns True when it changed the kernel. Raises PassError naming the failed phase.

        `full=False` (a datastore change) may reuse the kernel view of the previous pass when that pass
        observed and found nothing to do: a node joining a 1000-node mesh then costs one plan and its own
        few kernel writes, not a dump of every peer, route and FDB entry. The pass after any change, the
        resync timer and any retry always observe the kernel, so drift is still repaired."""
        try:
            return await self._reconcile(full=full)
        except PassError:
            raise
        except Exception as exc:  # a bug must not end the loop: count it, back off, try again
            log.exception("reconcile pass failed unexpectedly")
            raise PassError("internal", exc) from exc

    async def _reconcile(self, *, full: bool) -> bool:
        started = time.perf_counter()
        self.metrics.reconciles.inc()
        snapshot = self.datastore.snapshot()
        self._config = snapshot.config
        self.health.synced = snapshot.synced and self.datastore.failure is None
        if self.datastore.failure is not None:
            self._warn_once("datastore", f"the datastore stopped: {self.datastore.failure}")
        if not snapshot.synced:  # never act on a partial view: a default MeshConfig could mean cleartext
            self.health.detail = "waiting for the datastore's first full sync"
            log.info("%s", self.health.detail)
            return False
        self.dataplane.routes.watch_networks(
            c
            for r in snapshot.nodes
            if isinstance(r, Node) and r.name != self.identity.name
            for c in r.pod_cidrs
        )
        quiet, self._quiet = (None if full else self._quiet), None
        if quiet is not None:
            actual, mtu = quiet
        else:
            actual = await _phase("observe", self.dataplane.observe())
        vxlan_mac = actual.vxlan.mac if actual.vxlan else None
        local = local_node(
            self.identity,
            snapshot,
            vxlan_mac=vxlan_mac,
            underlay_mtu=1500,
            observed_generation=self.applied_generation,
        )
        if local is None:
            self.health.last_pass_ok = False
            self.health.detail = "waiting for our own node record (underlay address and pod CIDRs)"
            log.info("%s", self.health.detail)
            return False
        if quiet is None:
            mtu = (
                1500
                if self.underlay_mtu is None
                else await _phase("observe", self.underlay_mtu(local.node.underlay_ip))
            )
        local = replace(local, underlay_mtu=mtu)
        try:
            desired = plan(snapshot, local, names=self.dataplane.names)
            actions = diff(desired, actual, prune=True)  # synced: what is not desired may go
        except Exception as exc:
            raise PassError("plan", exc) from exc
        self._report(
            snapshot.nodes, desired, actual, encryption=snapshot.config.mode != EncryptionMode.DISABLED
        )
        if actions:
            await _phase("apply", self.dataplane.apply(actions))
            for kind, n in Counter(type(x).__name__ for x in actions).items():
                self.metrics.drift.labels(kind=kind).inc(n)
        else:
            log.debug("no change: %d peers, %d routes", len(desired.peers), len(desired.routes))
        if self.after_pass is not None:
            await _phase("after-pass", self.after_pass(local, desired))
        self.applied_generation = snapshot.config.generation
        if not any(isinstance(x, a.CreateVxlanDevice) for x in actions):  # else: its MAC comes next pass
            annotations = annotations_to_publish(self.identity, local, self.applied_generation)
            await _phase("publish", self.datastore.publish(self.identity.name, annotations))
        self._last = (desired, actual)
        self._quiet = None if actions else (actual, mtu)
        self.health.last_pass_ok = True
        failure = self.datastore.failure
        self.health.detail = "ok" if failure is None else f"the datastore stopped: {failure}"
        self.metrics.duration.observe(time.perf_counter() - started)
        return bool(actions)

    def _report(self, records: Any, desired: DesiredState, actual: ActualState, *, encryption: bool) -> None:
        self.metrics.observe_plan(desired, records, encryption=encryption)
        names = {p.public_key.base64: p.node for p in desired.peers}
        self.metrics.observe_peers(actual.wireguard.peers if actual.wireguard else (), names)
        for rec in records:
            if isinstance(rec, InvalidNode):
                self._warn_once(rec.name, f"node {rec.name or '?'} is not usable as a peer: {rec.detail}")
        for problem in desired.problems:
            if problem.kind != "invalid-node":
                self._warn_once(problem.kind, problem.detail)
        report_guards(self.metrics, desired, actual, self._violations)
        for route in actual.foreign_routes:
            self._warn_once(
                "foreign-route", f"route {route.dst} dev {route.dev} is not ours and overlaps a pod CIDR"
            )

    def _warn_once(self, key: str, message: str) -> None:
        if (key, message) not in self._warned:
            self._warned.add((key, message))
            log.warning("%s", message)

    def status(self) -> dict[str, Any]:
        """The /status document, with peer counters read from the device now (called from the HTTP thread)."""
        return status_document(self.identity, self._last, self._config, live=self._live_peers())

    def refresh_metrics(self) -> None:
        """Per-peer gauges read from the device at scrape time (called from the HTTP thread)."""
        peers = self._live_peers()
        if peers is not None and self._last is not None:
            self.metrics.observe_peers(peers, {p.public_key.base64: p.node for p in self._last[0].peers})

    def _live_peers(self) -> tuple[ObservedPeer, ...] | None:
        wg, loop = self.dataplane.wireguard, self._loop
        if wg is None or loop is None or loop.is_closed():
            return None
        try:
            return asyncio.run_coroutine_threadsafe(wg.observe_peers(), loop).result(timeout=2)
        except Exception as exc:
            log.debug("live peer read failed: %s", exc)
            return None


async def _phase(phase: str, aw: Any) -> Any:
    try:
        return await aw
    except Exception as exc:  # the loop must survive any one failure; the phase says where it happened
        raise PassError(phase, exc) from exc


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(x) for x in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
