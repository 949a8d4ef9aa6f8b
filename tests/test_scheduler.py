"""When passes run: a transient failure is retried with capped exponential backoff, a permanent one at the
resync cadence (trying sooner would fail the same way), and the loop lives on until stopped."""

from __future__ import annotations

import asyncio

from meshd.agent.kernel_view import Read
from meshd.agent.passes import PassError
from meshd.agent.scheduler import Scheduler, resync_read
from meshd.errors import ConfigError, TransientError
from meshd.retry import Backoff


async def forever() -> None:
    await asyncio.Event().wait()


async def run(failures: list[BaseException], *, resync: float) -> tuple[list[float], list[bool]]:
    """Run a scheduler whose passes fail with `failures` in turn, then succeed; stop at the first success
    or at the first failure retried later than 1 s. Returns the retry delays and whether each pass read
    the whole kernel."""
    stop, delays, fulls = asyncio.Event(), [], []

    async def one_pass(read: Read) -> bool:
        fulls.append(read is Read.FULL)
        if failures:
            raise PassError("apply", failures.pop(0))
        stop.set()
        return False

    def failed(_exc: PassError, delay: float) -> None:
        delays.append(delay)
        if delay > 1:
            stop.set()

    scheduler = Scheduler(
        one_pass, forever, failed, resync=resync, backoff=Backoff(initial=0.001, maximum=0.004, jitter=0)
    )
    await asyncio.wait_for(scheduler.run(stop), 30)
    return delays, fulls


async def test_transient_failures_back_off_exponentially_up_to_the_cap_then_the_pass_succeeds() -> None:
    delays, fulls = await run([TransientError("busy") for _ in range(5)], resync=3600)
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.004]
    assert len(fulls) == 6 and all(fulls)  # every retry reads the whole kernel


async def test_an_unexpected_error_is_retried_like_a_transient_one() -> None:
    delays, _ = await run([OSError("EBUSY")], resync=3600)
    assert delays == [0.001]


async def test_a_permanent_failure_is_retried_at_the_resync_cadence() -> None:
    delays, fulls = await run([ConfigError("underlay address not assigned")], resync=3600)
    assert delays == [3600]
    assert fulls == [True]  # stopped while waiting: no further pass


async def test_resyncs_read_the_wireguard_peers_and_every_full_every_th_the_whole_kernel() -> None:
    stop, reads = asyncio.Event(), []

    async def one_pass(read: Read) -> bool:
        reads.append(read)
        if len(reads) == 8:
            stop.set()
        return False

    scheduler = Scheduler(one_pass, forever, lambda _e, _d: None, resync=0.01, full_every=3)
    await asyncio.wait_for(scheduler.run(stop), 30)
    first, *resyncs = reads
    assert first is Read.FULL  # the first pass reads everything
    assert Read.PEERS in resyncs and Read.FULL in resyncs and Read.KEPT not in resyncs
    assert [resync_read(t, 3) for t in range(1, 8)] == [Read.PEERS, Read.PEERS, Read.FULL] * 2 + [Read.PEERS]
    assert {resync_read(t, 1) for t in range(1, 5)} == {Read.FULL}


async def test_a_change_does_not_lower_a_pending_full_read() -> None:
    reads: list[Read] = []
    stop = asyncio.Event()

    async def one_pass(read: Read) -> bool:
        reads.append(read)
        stop.set()
        return False

    scheduler = Scheduler(one_pass, forever, lambda _e, _d: None, resync=3600)
    scheduler.trigger(Read.PEERS)
    scheduler.trigger()
    await asyncio.wait_for(scheduler.run(stop), 30)
    assert reads == [Read.FULL]
