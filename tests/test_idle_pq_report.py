"""With post-quantum PSKs enabled, an idle agent's MeshNode reporter sleeps too (on a virtual clock,
tests.support.vclock): the PSK layer says when a pair's PSK state changes, and the reporter reads the
states (every pair) only then. PSKs replaced every rotation interval change no state and wake no reporter;
a pair's first PSK shows in the MeshNode within the reporter's second, and a PSK left stale (its peer
stopped exchanging) shows when it turns stale."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keys.values import PublicKey
from meshd.agent.events import EventRecorder
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.view import MeshView
from meshd.core.model import LocalNode, MeshConfig, Node, Snapshot, WireGuardSettings
from meshd.core.state import DesiredState, WireGuardReading
from meshd.pq.exchange import Outcome
from meshd.pq.manager import PskManager
from meshd.pq.report import pair_states
from meshd.pq.watch import StateWatch
from meshd.wake import sleep_until
from tests.support.vclock import run_virtual, virtual_loop
from tests.test_idle_wakeups import HOUR, Statuses
from tests.test_status_objects import KB, ME, NOW, node, state

INTERVAL = 120.0  # pskRotationInterval
STALE_AT = 2 * INTERVAL + 30  # a PSK not replaced for this long is stale (README)
SETTLED = 600.0  # the agent's first PSKs and writes are long done


def pq_snapshot(interval: float = INTERVAL) -> Snapshot:
    wg = WireGuardSettings(post_quantum=True, psk_rotation_interval=interval)
    a = replace(node("a"), post_quantum=True, public_key=ME.public_key)
    b = replace(node("b"), post_quantum=True, public_key=KB)
    return Snapshot((a, b, node("c")), MeshConfig(wireguard=wg), True)


class NoExchanges:
    """The WireGuard device: this test ends exchanges itself (`Agent.exchange`)."""

    name = "nosuchdev0"

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        assert all(psk is None for _, psk in changes)  # only clearing: no exchange installs here

    async def observe_device(self) -> WireGuardReading | None:
        return None


class TimedStatuses(Statuses):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[tuple[float, Mapping[str, Any]]] = []

    async def write_meshnode(self, name: str, status: Mapping[str, Any]) -> None:
        self.at.append((virtual_loop().time(), status))
        await super().write_meshnode(name, status)


@dataclass
class Agent:
    """The PSK manager and the MeshNode reporter of node `a`, wired as the agent wires them; `b` is its
    WireGuard peer taking part in PSK exchanges."""

    manager: PskManager
    view: MeshView
    store: TimedStatuses
    local: LocalNode
    desired: DesiredState
    reads: list[float] = field(default_factory=list)  # when the reporter read the PSK states

    def exchange(self) -> None:
        """An exchange with `b` ends: a new PSK is in place."""
        st = self.manager.states["b"]
        self.manager._done(st, Outcome(st.epoch + 1, f"{st.epoch + 1:08x}"))

    async def configure(self, interval: float) -> None:
        """A pass after the MeshConfig's pskRotationInterval changed."""
        await self.manager.update(pq_snapshot(interval), self.local, self.desired)

    def psk_written(self) -> list[tuple[float, Any]]:
        return [(t, psk_of_b(s)) for t, s in self.store.at]


def psk_of_b(status: Mapping[str, Any]) -> object:
    return next(p.get("psk") for p in status["peers"] if p["node"] == "b")


async def start() -> tuple[Agent, asyncio.Task[None]]:
    """The agent after its first pass: the pair with `b` planned, no PSK yet (pending)."""
    loop, store = virtual_loop(), TimedStatuses()
    manager = PskManager(node="a", device=NoExchanges(), clock=loop.time)
    snapshot, (desired, actual) = pq_snapshot(), state(None)
    me = snapshot.nodes[0]
    assert isinstance(me, Node)
    agent = Agent(manager, MeshView(ME), store, LocalNode(me, wireguard_available=True), desired)
    await manager.update(snapshot, agent.local, desired)

    def read() -> Mapping[str, str]:
        agent.reads.append(loop.time())
        return pair_states(manager)

    view = agent.view
    view.psk_states, view.psk_changed = read, manager.watch.changed  # as meshd.agent.wiring does
    view.last, view.applied = (desired, actual), snapshot
    view.pass_ended()
    clock = lambda: NOW + loop.time()  # noqa: E731
    # no device to re-read here (tests.test_idle_wakeups counts the re-reads after a write)
    rep = MeshNodeReporter(store, view, EventRecorder(store), clock=clock, recheck_max=0.0)  # type: ignore[arg-type]
    return agent, asyncio.create_task(rep.run())


async def renewing(agent: Agent, until: float) -> int:
    """Exchanges with `b` every rotation interval until `until`, as an idle mesh's are; returns how many."""
    loop, count = virtual_loop(), 0
    while loop.time() + INTERVAL <= until:
        await asyncio.sleep(INTERVAL)
        agent.exchange()
        count += 1
    return count


def test_psks_renewed_in_an_idle_hour_wake_no_reporter_and_change_no_meshnode() -> None:
    async def main() -> tuple[Agent, int, int, int]:
        agent, task = await start()
        agent.exchange()  # the pair's first PSK: active
        await renewing(agent, SETTLED)
        loop = virtual_loop()
        wakeups, reads, writes = loop.wakeups, len(agent.reads), len(agent.store.at)
        exchanges = await renewing(agent, SETTLED + HOUR)
        task.cancel()
        return agent, loop.wakeups - wakeups - exchanges, len(agent.reads) - reads, writes

    (agent, wakeups, reads, writes), _ = run_virtual(main())
    assert agent.psk_written()[-1][1] == "active"
    assert len(agent.store.at) == writes, "the idle hour wrote the MeshNode"
    assert reads == 0, f"the PSK states were read {reads} times in the idle hour"
    assert wakeups <= 2, f"{wakeups} wakeups in the idle hour besides the exchanges"


def test_a_pairs_first_psk_shows_in_the_meshnode_within_the_reporters_second() -> None:
    """`b`'s agent comes up after an hour: the pair pending until then (the reporter asleep), its first PSK
    shows as active as soon as before the reporter slept (it looked once a second)."""

    async def main() -> tuple[Agent, int, float]:
        agent, task = await start()
        loop = virtual_loop()
        await asyncio.sleep(SETTLED)
        wakeups = loop.wakeups
        await asyncio.sleep(HOUR)
        idle, done = loop.wakeups - wakeups, loop.time()
        agent.exchange()
        await asyncio.sleep(5)
        task.cancel()
        return agent, idle, done

    (agent, idle, done), _ = run_virtual(main())
    (first, pending), (at, active) = agent.psk_written()
    assert (pending, active) == ("pending", "active")
    assert first < SETTLED and done <= at <= done + 1.0, (done, at)
    assert idle <= 1, f"{idle} wakeups in the idle hour (the test's own sleep is one)"


def test_a_psk_left_stale_shows_when_it_turns_stale() -> None:
    """`b` stops exchanging (its agent went): the pair's PSK turns stale 2 intervals and 30 s after it was
    installed, and the MeshNode says so then, without the reporter looking in between."""

    async def main() -> tuple[Agent, int, float]:
        agent, task = await start()
        loop = virtual_loop()
        await renewing(agent, SETTLED)  # the last PSK from b
        last, wakeups = loop.time(), loop.wakeups
        await asyncio.sleep(HOUR)
        task.cancel()
        return agent, loop.wakeups - wakeups, last

    (agent, wakeups, last), _ = run_virtual(main())
    *_, (active_at, active), (at, stale) = agent.psk_written()
    assert (active, stale) == ("active", "stale")
    assert active_at < last + STALE_AT <= at <= last + STALE_AT + 1.0, (last, at)
    assert [t for t in agent.reads if t > last] == [at], "the PSK states were read while nothing changed"
    assert wakeups <= 3, f"{wakeups} wakeups in the hour"


def test_a_shorter_rotation_interval_brings_forward_when_a_psk_turns_stale() -> None:
    """pskRotationInterval goes from 2m to 10s: a PSK not replaced since turns stale 2 x 10 s + 30 s after
    it was installed (not 2 x 2m + 30 s), and the MeshNode says so then."""

    async def main() -> Agent:
        agent, task = await start()
        await asyncio.sleep(SETTLED)
        agent.exchange()
        await asyncio.sleep(30)
        await agent.configure(10.0)
        await asyncio.sleep(HOUR)
        task.cancel()
        return agent

    agent, _ = run_virtual(main())
    (active_at, active), (stale_at, stale) = agent.psk_written()[-2:]
    assert (active, stale) == ("active", "stale")
    assert SETTLED <= active_at <= SETTLED + 1.0 and SETTLED + 50 <= stale_at <= SETTLED + 51, stale_at


def test_our_key_switch_shows_the_pair_pending_within_the_reporters_second() -> None:
    async def main() -> tuple[Agent, float]:
        agent, task = await start()
        await asyncio.sleep(SETTLED)
        agent.exchange()
        await asyncio.sleep(60)
        switched = virtual_loop().time()
        await agent.manager.own_key_changing()
        await asyncio.sleep(HOUR)
        task.cancel()
        return agent, switched

    (agent, switched), _ = run_virtual(main())
    (_, active), (at, pending) = agent.psk_written()[-2:]
    assert (active, pending) == ("active", "pending")
    assert switched <= at <= switched + 1.0


def test_the_watch_tells_each_psk_turning_stale_in_turn_and_no_renewal() -> None:
    """PSKs of b, c, d installed 10 s apart, b's replaced at 30 s (active stays active: not told); with a
    10 s interval each turns stale 50 s after its last install: c, d, then b, each told when it does."""

    async def main() -> tuple[list[float], int]:
        loop = virtual_loop()
        watch, told = StateWatch(loop.time, interval=10.0), list[float]()
        for peer in ("b", "c", "d"):
            watch.installed(peer, loop.time())
            await asyncio.sleep(10)
        watch.changed.clear()
        watch.installed("b", loop.time())
        start = loop.wakeups
        while not await sleep_until(HOUR, loop.time, watch.changed):  # until told, or the hour is over
            told.append(loop.time())
            watch.changed.clear()
        return told, loop.wakeups - start

    (told, wakeups), _ = run_virtual(main())
    assert told == [60.0, 70.0, 80.0]
    assert wakeups == 4, wakeups  # the three stale times and the end of the hour
