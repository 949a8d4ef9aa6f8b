"""Sleeping until something is due, without polling: a loop of the agent with nothing to do sleeps until its
next deadline or until an event (a pass ended, a state changed) moves that deadline. On a VM each wakeup of
a sleeping process costs milliseconds of CPU, so an idle agent's CPU is the number of its wakeups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field


async def sleep_until(deadline: float | None, clock: Callable[[], float], *events: asyncio.Event) -> bool:
    """Sleep until `deadline` (in `clock`'s time; None: none) or until one of `events` is set, whichever
    comes first. True when the deadline came (no event was set)."""
    if any(e.is_set() for e in events):
        return False
    timeout = None if deadline is None else max(0.0, deadline - clock())
    if not events:
        if timeout is None:
            raise ValueError("sleeping forever: no deadline and no event")
        await asyncio.sleep(timeout)
        return True
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return not done


@dataclass
class Alarm:
    """The deadline one loop sleeps until; others bring it forward when something falls due sooner."""

    clock: Callable[[], float]
    _at: float | None = None  # what the sleeper sleeps until (None: until woken)
    _sleeping: bool = False
    _sooner: asyncio.Event = field(default_factory=asyncio.Event)

    def sooner(self, at: float | None) -> None:
        """Something is due at `at` (None: nothing): the sleeper wakes if it would sleep past that."""
        if self._sleeping and at is not None and (self._at is None or at < self._at):
            self._sooner.set()

    async def sleep(self, at: float | None, *events: asyncio.Event) -> bool:
        """Until `at`, an earlier time given to `sooner`, or one of `events`. True when `at` came."""
        self._at, self._sleeping = at, True
        self._sooner.clear()
        try:
            return await sleep_until(at, self.clock, self._sooner, *events)
        finally:
            self._sleeping = False
