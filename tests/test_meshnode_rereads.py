"""The MeshNode reporter's device re-reads (for a WireGuard peer whose handshake is `Never`) take at most a
thousandth of the agent's time: on a device whose reading takes long they come less often, and not at all
once they would come less often than `recheck_max`; the resync passes' readings take over."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from meshd.agent.events import EventRecorder
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.view import MeshView
from meshd.core.state import ObservedPeer, WireGuardReading
from meshd.datastore.file_status import FileStatusStore
from tests.test_status_objects import KB, ME, NOW, snap, state


def re_reads(
    tmp_path: Path,
    read_takes: float,
    seconds: int = 120,
    at_second: Callable[[int, MeshView], float | None] | None = None,
) -> list[float]:
    """When (seconds after the first round) the reporter re-read a device whose reading takes `read_takes`
    seconds, over `seconds` seconds of rounds one second apart, no handshake ever coming. `at_second(s,
    view)` may change the view before round s, and return how long readings take from then on."""
    clock, timer, reads, took = [NOW], [0.0], [], [read_takes]

    class Device:
        async def observe_device(self) -> WireGuardReading:
            reads.append(clock[0] - NOW)
            timer[0] += took[0]
            return WireGuardReading(None, 0, (ObservedPeer(KB, None, frozenset(), last_handshake=None),))

    async def run() -> None:
        store = FileStatusStore(tmp_path)
        view = MeshView(ME, Device())
        view.last, view.applied = state(None), snap()
        rep = MeshNodeReporter(
            store, view, EventRecorder(store), clock=lambda: clock[0], timer=lambda: timer[0]
        )
        for second in range(seconds):
            changed = at_second(second, view) if at_second else None
            took[0] = took[0] if changed is None else changed
            await rep.step()
            clock[0] += 1
        await store.close()

    asyncio.run(run())
    return reads


@pytest.mark.parametrize(("read_takes", "apart"), [(0.0001, 5), (0.001, 5), (0.008, 8), (0.016, 16)])
def test_a_device_that_reads_slowly_is_re_read_less_often(
    tmp_path: Path, read_takes: float, apart: int
) -> None:
    reads = re_reads(tmp_path, read_takes, seconds=60)  # the status's first minute: the schedule's 5 s
    gaps = {b - a for a, b in itertools.pairwise(reads)}
    assert reads[0] == 1 and gaps == {apart}, reads


def test_re_reads_that_would_come_further_apart_than_recheck_max_stop(tmp_path: Path) -> None:
    assert re_reads(tmp_path, 0.05) == [1], "one re-read (50 ms: every 50 s would be past 20 s), then none"


def test_a_slow_re_read_stops_re_reads_only_until_the_status_is_written_again(tmp_path: Path) -> None:
    """One slow reading (a busy loop, a device timing out) stops the re-reads of that status, not for good:
    a status written again (here: a handshake a pass saw, long stale) starts them again, measured again."""

    def at_second(second: int, view: MeshView) -> float | None:
        if second != 60:
            return None
        view.last = state(NOW + second - 1000)
        return 0.0001

    reads = re_reads(tmp_path, 0.05, at_second=at_second)
    assert reads[0] == 1 and reads[1] > 60, reads
    assert len([r for r in reads if r > 60]) >= 5, "re-read every 5 s again after the new status"
