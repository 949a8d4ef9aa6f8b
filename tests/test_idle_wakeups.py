"""An idle agent's loops sleep until something is due: on a virtual clock (tests.support.vclock) an hour with
nothing to do costs a handful of wakeups, not one per poll, yet what falls due still happens on time: a
scheduled key rotation asks for its pass, the helper link goes after its grace, the MeshNode is written after
a pass and when a handshake turns stale, a PSK exchange is retried on its backoff schedule."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from keys.values import PrivateKey, PublicKey
from meshd.agent.events import EventRecorder
from meshd.agent.helper_link import HelperLink
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.rotation import RotationDriver
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.model import LocalNode, MeshConfig, Node, Snapshot, WireGuardSettings
from meshd.core.ports import EventRecord
from meshd.core.state import WireGuardReading
from meshd.pq.derive import PairKeys
from meshd.pq.manager import PskManager
from meshd.pq.pairs import PqPair, PqPlan
from meshd.pq.state import PairState
from tests.support.vclock import run_virtual, virtual_loop
from tests.test_status_objects import KB, ME, NOW, snap, state

HOUR = 3600.0


class NoDevice:
    """The helper link's device, as the kernel shows it when there is no such link."""

    async def observe_device(self) -> None:
        return None


async def no_device(name: str, key: PrivateKey) -> NoDevice:
    return NoDevice()


class Passes:
    """Stands in for the reconcile loop: each trigger runs one pass of the driver's hooks."""

    def __init__(self, driver: RotationDriver, interval: float = 0.0) -> None:
        self.driver, self.interval = driver, interval
        self.times: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []
        driver.trigger = self.trigger

    def trigger(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        self.tasks.append(asyncio.create_task(self.run()))

    async def run(self) -> None:
        node = Node("a", ipaddress.ip_address("198.18.0.1"), (ipaddress.ip_network("198.19.1.0/24"),))
        config = MeshConfig(wireguard=WireGuardSettings(key_rotation_interval=self.interval))
        no_key = Identity(name="a", public_key=None)  # the schedule runs; no rotation starts
        await self.driver.before_plan(Snapshot((node,), config, True), LocalNode(node), no_key)
        await self.driver.after_apply()


def make_driver() -> RotationDriver:
    loop = asyncio.get_running_loop()
    return RotationDriver(
        name="a",
        key_file=Path("/nonexistent/key"),  # no key file: the schedule counts from now
        main="wg",
        helper=HelperLink("wg-r", no_device, None),  # type: ignore[arg-type]
        rekey=lambda key: None,
        observe_main=NoDevice().observe_device,
        registry=CollectorRegistry(),
        clock=loop.time,
    )


def test_an_idle_rotation_driver_sleeps_and_asks_only_for_the_pass_that_removes_the_helper_link() -> None:
    async def main() -> tuple[list[float], float, bool]:
        driver = make_driver()
        passes, stop = Passes(driver), asyncio.Event()
        task = asyncio.create_task(driver.run(stop))
        await asyncio.sleep(HOUR)
        stop.set()
        await task
        return passes.times, driver.grace, driver._helper_up

    (times, grace, helper_up), loop = run_virtual(main())
    assert times == [grace]  # an earlier agent's helper link may be left: one pass removes it after grace
    assert not helper_up
    assert loop.wakeups <= 4, f"{loop.wakeups} wakeups in an idle hour"


def test_a_scheduled_rotation_asks_for_its_pass_when_due_after_sleeping_until_then() -> None:
    async def main() -> tuple[list[float], float, int, float]:
        driver = make_driver()
        passes, stop = Passes(driver), asyncio.Event()
        task = asyncio.create_task(driver.run(stop))
        await asyncio.sleep(60)  # idle, nothing scheduled; then a MeshConfig asks for a rotation each hour
        passes.interval = HOUR
        await passes.run()
        due, loop = driver._due, virtual_loop()
        assert due is not None and due > loop.time()
        before = loop.wakeups
        await asyncio.sleep(due - loop.time() + 1)
        stop.set()
        await task
        return passes.times, due, loop.wakeups - before, 0.5

    (times, due, wakeups, period), _ = run_virtual(main())
    late = [t for t in times if t > 60]
    assert late and due <= late[0] <= due + period, (due, late)
    assert wakeups <= 3, f"{wakeups} wakeups while waiting for the rotation"


class Statuses:
    def __init__(self) -> None:
        self.written: list[Mapping[str, Any]] = []

    async def read_meshnode(self, name: str) -> dict[str, Any] | None:
        return None

    async def write_meshnode(self, name: str, status: Mapping[str, Any]) -> None:
        self.written.append(status)

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        pass


def handshake_b(status: Mapping[str, Any]) -> object:
    return next(p.get("handshake") for p in status["peers"] if p["node"] == "b")


def test_an_idle_meshnode_reporter_sleeps_and_writes_after_a_pass_and_when_a_handshake_turns_stale() -> None:
    """A handshake that turns stale is written when it does; the device is then re-read on the README's
    schedule (every 5 s for a minute, then after 10 and 20 s more), and after that the reporter sleeps
    until the next pass."""

    async def main() -> tuple[list[int], list[Mapping[str, Any]], int]:
        loop, store, view = virtual_loop(), Statuses(), MeshView(ME)
        rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: NOW + loop.time())  # type: ignore[arg-type]
        view.last, view.applied = state(NOW - 5), snap()  # b's handshake 5 s old: stale after 175 s
        view.pass_ended()
        task = asyncio.create_task(rep.run())
        counts, wakeups = [], 0
        for until in (170, 200, 600, HOUR):
            wakeups = loop.wakeups
            await asyncio.sleep(until - loop.time())
            counts.append(len(store.written))
        idle = loop.wakeups - wakeups
        view.last = state(NOW + loop.time())  # a pass: b handshook again
        view.pass_ended()
        await asyncio.sleep(5)
        counts.append(len(store.written))
        task.cancel()
        return counts, store.written, idle

    (counts, written, idle), _ = run_virtual(main())
    assert counts == [1, 2, 2, 2, 3]
    assert [handshake_b(s) for s in written] == [None, "Stale", None]
    assert idle <= 1, f"{idle} wakeups in the idle 50 minutes (the test's own sleep is one)"


class Attempts(PskManager):
    """Records when each exchange it initiates fails (its device does not exist, so each one does)."""

    failed_at: list[float]

    def _failed(self, st: PairState | None, exc: BaseException, *, who: str = "") -> None:
        self.failed_at.append(self.clock())
        super()._failed(st, exc, who=who)


class Absent:
    name = "nosuchdev0"

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        raise AssertionError("no exchange succeeds here")

    async def observe_device(self) -> WireGuardReading | None:
        return None


def test_the_psk_manager_sleeps_between_exchanges_and_retries_on_its_backoff_schedule() -> None:
    """An initiator's exchange that fails is retried after 1, 2, 4, then 8 s; in between the manager
    sleeps (it used to look every 0.25 s while it initiated for some pair)."""

    async def main() -> tuple[list[float], int]:
        loop = virtual_loop()
        assert ME.public_key is not None
        keys = PairKeys("a", "b", ME.public_key, KB)
        pair = PqPair("b", keys, True, ipaddress.ip_address("198.19.1.0"), ipaddress.ip_address("198.19.2.0"))
        m = Attempts(node="a", device=Absent(), clock=loop.time)
        m.failed_at = []
        m.plan, m.states = PqPlan(True, 120.0, (pair,)), {"b": PairState(pair)}
        stop = asyncio.Event()
        task = asyncio.create_task(m.run(stop))
        await asyncio.sleep(60)
        stop.set()
        await task
        return m.failed_at, loop.wakeups

    (failed_at, wakeups), _ = run_virtual(main())
    assert failed_at == [0, 1, 3, 7, 15, 23, 31, 39, 47, 55]
    assert wakeups <= len(failed_at) + 1, f"{wakeups} wakeups for {len(failed_at)} exchanges"
