"""Tells when a pair's reported PSK state (meshd.pq.report: pending, active, stale, off) changes, so that
its reader (the MeshNode reporter) sleeps in between instead of looking at every pair each second. A state
changes when the pairs change (a plan, our key switch), when a pair gets its first PSK or one after its last
turned stale, and by itself when an active PSK turns stale (no new one within two rotation intervals and a
margin): one timer, for the oldest PSK. A PSK replacing an active one changes no state (an exchange of an
idle mesh wakes no reader): it only moves that timer."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from meshd.pq.state import active_until


@dataclass
class StateWatch:
    clock: Callable[[], float]  # the PSK manager's (install times are in its time)
    interval: float = 120.0  # pskRotationInterval
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a pair's state changed; its reader clears it when it reads the states."""
    _active: OrderedDict[str, float] = field(
        default_factory=OrderedDict
    )  # peer -> PSK installed, oldest first
    _timer: asyncio.TimerHandle | None = None
    _due: float | None = None  # when the timer fires: the oldest PSK turns stale

    def installed(self, peer: str, since: float) -> None:
        """A new PSK for `peer`'s pair at `since` (no earlier than any before it)."""
        if peer not in self._active:  # pending or stale: now active
            self.changed.set()
        self._active[peer] = since
        self._active.move_to_end(peer)
        self._arm()

    def dropped(self, peer: str) -> None:
        """`peer`'s pair went, or starts again without a PSK (its state changes: the caller says so)."""
        if self._active.pop(peer, None) is not None:
            self._arm()

    def reset(self, pairs: Iterable[tuple[str, float | None]], interval: float) -> None:
        """Every pair again, with their PSKs' install times (None: none): a whole plan, a new interval."""
        now, self.interval = self.clock(), interval
        active = [
            (since, peer)
            for peer, since in pairs
            if since is not None and now < active_until(since, interval)
        ]
        self._active = OrderedDict((peer, since) for since, peer in sorted(active))
        self.changed.set()
        self._arm()

    def _arm(self) -> None:
        first = next(iter(self._active.values()), None)
        due = None if first is None else active_until(first, self.interval)
        if due == self._due:
            return
        if self._timer is not None:
            self._timer.cancel()  # (a cancelled timer wakes no loop)
        self._due, self._timer = due, None
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - self.clock()), self._expire)

    def _expire(self) -> None:
        """The oldest PSKs that turned stale: their states changed."""
        self._due, self._timer, now = None, None, self.clock()
        while self._active:
            peer, since = next(iter(self._active.items()))
            if now < active_until(since, self.interval):
                break
            del self._active[peer]
            self.changed.set()
        self._arm()
