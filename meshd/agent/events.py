"""Records Events through the StatusStore: one object per cause (same object + reason + message), whose
count and last time move when the cause comes back, and never a storm: a cause counts again only after
it went away (edge-triggered, not once per pass), an Event already written is updated at most every
`repeat_after` seconds, and new writes draw on a small token bucket (like client-go's spam filter)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from meshd.core.ports import EventRecord, StatusStore

log = logging.getLogger(__name__)


@dataclass
class _Tally:
    count: int
    first: float
    last: float
    written: int = 0  # the count last written
    written_at: float = float("-inf")
    failed: bool = False


@dataclass
class EventRecorder:
    store: StatusStore
    repeat_after: float = 30.0
    burst: int = 10
    refill: float = 10.0
    """Seconds per new token: beyond the burst, at most one Event write per `refill` seconds."""
    clock: Callable[[], float] = time.time
    emitted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by every occurrence, for whoever flushes to wake up (it clears it)."""
    _tallies: dict[EventRecord, _Tally] = field(default_factory=dict)
    _present: dict[str, frozenset[EventRecord]] = field(default_factory=dict)
    _tokens: float = -1.0
    _refilled: float = 0.0

    def emit(self, event: EventRecord) -> None:
        """One occurrence of `event` (e.g. a key created, rotated)."""
        now = self.clock()
        tally = self._tallies.get(event)
        if tally is None:
            self._tallies[event] = _Tally(1, now, now)
        else:
            tally.count, tally.last = tally.count + 1, now
        self.emitted.set()

    def observe(self, scope: str, events: Iterable[EventRecord]) -> None:
        """The causes present now in `scope`: each one new since the last call counts one occurrence."""
        now_present = frozenset(events)
        for event in now_present - self._present.get(scope, frozenset()):
            self.emit(event)
        self._present[scope] = now_present

    def forget(self, scope: str) -> None:
        self._present.pop(scope, None)

    def due_in(self) -> float | None:
        """Seconds until `flush` has something to write (an occurrence's turn after `repeat_after`, a retry
        after a failed write, a token), or None while nothing waits: a flusher sleeps until then."""
        now = self.clock()
        turns = [t.written_at + self.repeat_after for t in self._tallies.values() if t.written != t.count]
        if not turns:
            return None
        tokens = (
            float(self.burst) if self._tokens < 0 else self._tokens + (now - self._refilled) / self.refill
        )
        return max(0.0, min(turns) - now, (1.0 - tokens) * self.refill)

    async def flush(self) -> int:
        """Write what is due; returns the number of writes. A failed write is retried on a later flush."""
        now, writes = self.clock(), 0
        self._refill(now)
        for event, t in self._tallies.items():
            if t.written == t.count or now - t.written_at < self.repeat_after or self._tokens < 1:
                continue
            self._tokens -= 1
            try:
                await self.store.record_event(event, count=t.count, first=t.first, last=t.last)
            except Exception as exc:  # Events are best effort: retried after `repeat_after`, said once
                level = logging.DEBUG if t.failed else logging.WARNING
                log.log(
                    level, "could not record event %s on %s %s: %s", event.reason, event.kind, event.name, exc
                )
                t.failed, t.written_at = True, now
                continue
            t.written, t.written_at, writes = t.count, now, writes + 1
        return writes

    def _refill(self, now: float) -> None:
        if self._tokens < 0:
            self._tokens, self._refilled = float(self.burst), now
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) / self.refill)
        self._refilled = now
