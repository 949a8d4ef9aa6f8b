"""When passes run: every trigger marks one dirty flag (a pass after a change verifies it), a timer forces
a pass every `resync` seconds (reading the WireGuard peers again, and the whole kernel every
`full_every`-th time), and a failed pass is retried (tenacity), reading the whole kernel: a transient
failure with capped exponential backoff and jitter, a permanent one (bad configuration, a missing kernel
feature, a refused write) at the resync cadence, since trying sooner would fail the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from meshd.agent.kernel_view import Read
from meshd.agent.passes import PassError
from meshd.errors import PermanentError
from meshd.retry import Backoff

RunPass = Callable[[Read], Awaitable[bool]]
"""Runs one pass reading that much of the kernel; True when it changed something. Raises PassError."""
OnFailure = Callable[[PassError, float], None]
"""Told of each failed pass and the seconds until the retry."""


@dataclass
class Scheduler:
    run_pass: RunPass
    wait_changed: Callable[[], Awaitable[None]]
    on_failure: OnFailure
    resync: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    full_every: int = 10
    """Every this many resyncs reads the whole kernel; the others read the WireGuard peers."""
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _read: Read = Read.FULL  # what the next pass reads of the kernel

    def trigger(self, read: Read = Read.KEPT) -> None:
        self._read = max(self._read, read)
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._watch(), name="watch"),
            asyncio.create_task(self._tick(), name="tick"),
        ]
        self.trigger(Read.FULL)
        try:
            while not stop.is_set():
                await _first(self._dirty.wait(), stop.wait())
                if stop.is_set():
                    break
                self._dirty.clear()
                read, self._read = self._read, Read.KEPT
                if await self._run_until_done(stop, read):
                    self.trigger()  # verify: the next pass must find nothing to do
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _watch(self) -> None:
        while True:
            await self.wait_changed()
            self.trigger()

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.resync)
            ticks += 1
            self.trigger(resync_read(ticks, self.full_every))

    async def _run_until_done(self, stop: asyncio.Event, read: Read) -> bool:
        """One pass, retried until it succeeds or `stop` is set; every retry reads the whole kernel."""

        async def sleep(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(PassError),
            wait=self._delay,
            stop=lambda _state: stop.is_set(),
            sleep=sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if stop.is_set():
                        return False
                    retry = attempt.retry_state.attempt_number > 1
                    return await self.run_pass(Read.FULL if retry else read)
        except PassError:  # stopped while failing
            return False
        return False

    def _delay(self, state: RetryCallState) -> float:
        if isinstance(_error(state).cause, PermanentError):
            return self.resync
        return float(self.backoff.wait()(state))

    def _failed(self, state: RetryCallState) -> None:
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        self.on_failure(_error(state), sleep)


def resync_read(tick: int, full_every: int) -> Read:
    """What the `tick`-th resync (from 1) reads of the kernel."""
    return Read.FULL if tick % max(1, full_every) == 0 else Read.PEERS


def _error(state: RetryCallState) -> PassError:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(exc, PassError)
    return exc


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(x) for x in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
