"""Keeps this node's MeshNode in line with its last complete pass, writing only when it changed and at
most once per `interval` (a burst of passes is one write of the last state, written once the passes
pause), so a quiet node writes nothing. While a WireGuard peer has no recent handshake, its handshake is
re-read from the device every `recheck` seconds (passes run only on change or resync), so "Never" clears
soon after the first one; a handshake
that turns stale is written when it does, from the last reading (no re-read needed). Once the status
has stood for `grace` seconds, a re-read that changes nothing doubles the wait; past `recheck_max` the
reporter stops re-reading and the resync passes, which read the device anyway, bring the next handshake
(a new reading is a new pass view). A standby WireGuard peer that carries no traffic never handshakes, and
re-reading a 1000-peer device for it besides the resync would be most of an idle agent's work. A re-read
waits at least `read_share` of a second per second its last one took (reading 5000 peers takes tens of
milliseconds: re-reads come less often on a large device, and stop once they would come less often than
`recheck_max`, until the status is written again: then they start again and measure again)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from meshd.agent.events import EventRecorder
from meshd.agent.view import MeshView
from meshd.core.events import local_events
from meshd.core.meshnode import STALE_HANDSHAKE, PeerMemo, meshnode_status
from meshd.core.ports import StatusStore
from meshd.core.state import ActualState, DesiredState, ObservedPeer
from meshd.wake import sleep_until

log = logging.getLogger(__name__)


@dataclass
class MeshNodeReporter:
    store: StatusStore
    view: MeshView
    events: EventRecorder
    interval: float = 1.0
    quiet: float = 0.2  # seconds without a pass before a round (after_passes)
    defer: float = 3.0  # at most this long
    recheck: float = 5.0
    recheck_max: float = 20.0
    read_share: float = 0.001  # of the agent's time, at most, spent re-reading the device
    grace: float = 60.0
    stale_after: float = STALE_HANDSHAKE
    clock: Callable[[], float] = time.time
    timer: Callable[[], float] = time.perf_counter  # what a re-read's duration is measured with
    writes: int = 0
    """MeshNode writes so far (what the write-rate measurements count)."""
    _written: dict[str, Any] | None = None
    _seen: tuple[DesiredState, ActualState] | None = None
    _psk: Mapping[str, str] | None = None  # the PSK states of the last status
    _psk_read: Mapping[str, str] | None = None  # as last read (read again when the PSK layer says so)
    _checked: float = field(default=float("-inf"))
    _wait: float = 0.0  # seconds from the last re-read to the next one; 0: `recheck`
    _read_took: float = 0.0  # seconds the last re-read took
    _written_at: float = field(default=float("-inf"))
    _failures: int = 0
    _loaded: bool = False
    _live: tuple[ObservedPeer, ...] | None = None  # the peers the last re-read found
    _next_stale: float = field(default=float("inf"))  # when the next handshake turns stale
    _peers: PeerMemo = field(default_factory=PeerMemo)  # per-peer entries, kept from status to status
    _round_at: float = field(default=float("-inf"))  # when the last round started (the loop's clock)

    async def run(self) -> None:
        while True:
            await self._next_round()
            await self.after_passes()
            self.view.passes.clear()  # this round reports the passes so far
            self._round_at = asyncio.get_running_loop().time()
            try:
                await self.step()
            except Exception as exc:  # e.g. reading the stored MeshNode failed: again later, with backoff
                self._failures += 1
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(level, "MeshNode %s not updated (retrying): %s", self.view.identity.name, exc)
            else:
                self._failures = 0

    async def _next_round(self) -> None:
        """Once a pass ended or a re-read or a handshake turning stale is due, and at least `interval`
        seconds after the last round (longer after failures), or once a post-quantum PSK state changed
        (they change between passes: the PSK layer says when). Nothing else wakes the reporter, so an idle
        agent's reporter sleeps. A failed round is retried after its backoff."""
        loop = asyncio.get_running_loop()
        if not self._failures:
            await sleep_until(self._due_at(), self.clock, self.view.passes, self.view.psk_changed)
        gap = self.interval * min(2**self._failures, 30)
        await asyncio.sleep(max(0.0, self._round_at + gap - loop.time()))

    def _due_at(self) -> float | None:
        """When `step` next has something to do without a new pass: a re-read of the device, or a
        handshake of the last status turning stale (None: neither)."""
        times = [self._next_stale] if math.isfinite(self._next_stale) else []
        wait = self._reread_wait()
        if wait <= self.recheck_max and self._waiting_for_handshakes():
            times.append(self._checked + wait)
        return min(times, default=None)

    async def step(self) -> bool:
        """One round: rebuild the status when there is something new, write it if it changed."""
        last, snapshot = self.view.last, self.view.applied
        if last is None or snapshot is None:
            self.view.psk_changed.clear()  # read with the first pass's status
            return False
        if not self._loaded:  # what a previous run wrote: unchanged, it is not written again
            self._written = await self.store.read_meshnode(self.view.identity.name)
            self._loaded = True
        now, psk = self.clock(), self._psk_states()
        fresh = not _same(last, self._seen)  # a pass that planned and saw the same objects is not new
        wait = self._reread_wait()
        due = wait <= self.recheck_max and self._waiting_for_handshakes() and now - self._checked >= wait
        aged = now >= self._next_stale  # a handshake turned stale since the status was built
        if not fresh and not due and not aged and psk == self._psk:
            return False
        passed = last
        if due:
            started = self.timer()
            live, self._checked = await self.view.live_peers(), now
            if live is not None:  # a failed read says nothing about what a reading costs
                self._read_took = self.timer() - started
            if not fresh and not aged and psk == self._psk and live is not None and live == self._live:
                self._stood(now)  # the device reads as before (memoized peers: by identity): no new status
                return False
            self._live, last = live, _with_live(last, live)
        self._psk, self._next_stale = psk, _next_stale(last[1], now, self.stale_after)
        if fresh:
            self.events.observe("local", local_events(self.view.identity.name, *passed))
        self._seen = passed
        status = meshnode_status(
            self.view.identity,
            snapshot,
            last,
            now=now,
            previous=self._written,
            stale_after=self.stale_after,
            psk=psk,
            memo=self._peers,
        )
        if status == self._written:
            if due:
                self._stood(now)
            return False
        try:
            await self.store.write_meshnode(self.view.identity.name, status)
        except Exception:
            self._seen = None  # rebuilt and retried next round (run() backs off and says it once)
            raise
        self._failures, self._written, self.writes = 0, status, self.writes + 1
        self._wait, self._written_at = self.recheck, now
        self._read_took = 0.0  # a new status: its re-reads start again, and measure again
        log.info("wrote MeshNode %s: %s", self.view.identity.name, status["summary"])
        return True

    def _psk_states(self) -> Mapping[str, str]:
        """The pairs' PSK states, read again (every pair) only when one changed."""
        if self._psk_read is None or self.view.psk_changed.is_set():
            self.view.psk_changed.clear()
            self._psk_read = self.view.psk_states()
        return self._psk_read

    async def after_passes(self) -> None:
        """While passes keep coming (a burst of changes), wait until `quiet` seconds passed without one, at
        most `defer` seconds: the status of the last one is written, and building and writing it (tens of
        milliseconds at 5000 peers) does not hold up the passes on the same loop."""
        loop, waited = asyncio.get_running_loop(), 0.0
        while waited < self.defer and loop.time() - self.view.passed_at < self.quiet:
            await asyncio.sleep(self.quiet)
            waited += self.quiet

    def _stood(self, now: float) -> None:
        """A re-read found nothing new: once the status stood `grace` seconds, wait twice as long (past
        `recheck_max`, the resyncs' reads take over)."""
        if now - self._written_at >= self.grace:
            self._wait = 2 * (self._wait or self.recheck)

    def _reread_wait(self) -> float:
        """Seconds from the last re-read to the next: the schedule's wait, longer on a device whose reading
        takes long (`read_share`)."""
        return max(self._wait or self.recheck, self._read_took / self.read_share)

    def _waiting_for_handshakes(self) -> bool:
        peers = (self._written or {}).get("peers") or ()
        return any(p.get("handshake") for p in peers)


def _next_stale(actual: ActualState, now: float, stale_after: float) -> float:
    """When the first of the WireGuard peers' handshakes that are fresh now turns stale (inf: none)."""
    peers = actual.wireguard.peers if actual.wireguard else ()
    times = (h + stale_after for p in peers if (h := p.last_handshake) and h + stale_after >= now)
    return min(times, default=float("inf"))


def _with_live(
    last: tuple[DesiredState, ActualState], live: tuple[ObservedPeer, ...] | None
) -> tuple[DesiredState, ActualState]:
    """The last pass's view with the peers as the device shows them now (`live` None: as the pass saw them)."""
    desired, actual = last
    if live is None or actual.wireguard is None:
        return last
    return desired, replace(actual, wireguard=replace(actual.wireguard, peers=live))


def _same(last: tuple[DesiredState, ActualState], seen: tuple[DesiredState, ActualState] | None) -> bool:
    return seen is not None and last[0] is seen[0] and last[1] is seen[1]
