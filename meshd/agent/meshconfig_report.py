"""The MeshConfig status, written by whichever agent holds the lease (no single point of failure: every
agent runs this; when the holder dies another takes over). The holder and a few candidates
(meshd.agent.candidates) try for the lease each round; every other agent only looks at it now and then, at
random times, and takes it over when a look finds it as its previous look did, at least a lease duration
before (so the holder is dead). The holder also speaks for the cluster in Events: conflicts that left nodes
out and a rejected MeshConfig. This loop also writes the agent's Events (as they come, between rounds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshd.agent.events import EventRecorder
from meshd.agent.view import MeshView
from meshd.core.events import cluster_events, rejected_event
from meshd.core.meshconfig_status import meshconfig_status
from meshd.core.ports import StatusStore

log = logging.getLogger(__name__)


def _always() -> bool:
    return True


@dataclass
class MeshConfigReporter:
    store: StatusStore
    view: MeshView
    events: EventRecorder
    config_error: Callable[[], str | None]
    """Why the datastore rejects the latest MeshConfig (None: accepted)."""
    generation: Callable[[], int | None]
    """The latest MeshConfig's generation as the datastore last saw it (None: there is none)."""
    interval: float = 5.0
    lease_duration: float = 15.0
    recount: float = 10.0
    """Seconds between MeshNode lists while the MeshConfig stays the same (a new one is counted at once)."""
    clock: Callable[[], float] = time.time
    contends: Callable[[], bool] = _always
    """Whether this agent is a candidate, trying for the lease each round (meshd.agent.candidates)."""
    look_every: float = 300.0
    """Mean seconds between a non-candidate's looks at the lease (each gap drawn at random)."""
    recheck: float = 60.0
    """Seconds a non-candidate sleeps at most between rounds (candidacy follows the node list)."""
    rng: random.Random = field(default_factory=random.Random)
    holding: bool = False
    _due_at: float = float("-inf")  # the loop's clock: when the next round is due
    _look_at: float | None = None  # the loop's clock: when a non-candidate looks next
    _written: dict[str, Any] | None = None
    _counted: tuple[int, str | None, float] | None = None  # (generation, rejection, when) of the last list
    _changed_at: float = 0.0
    _failure: str | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= self._due_at:
                self._due_at = loop.time() + self.interval
                await self._round()
            self.events.emitted.clear()
            await self.events.flush()
            with contextlib.suppress(TimeoutError):  # an Event to write wakes us before the round
                await asyncio.wait_for(self.events.emitted.wait(), self._pause(loop.time()))

    def _pause(self, now: float) -> float:
        """Until the next round. A non-candidate sleeps until its next look, an Event's write falling due,
        or for `recheck` seconds if that is sooner (to notice that it became a candidate)."""
        if self._look_at is not None:
            wake, events = min(self._look_at, now + self.recheck), self.events.due_in()
            self._due_at = max(self._due_at, wake if events is None else min(wake, now + events))
        return max(0.0, self._due_at - now)

    async def _round(self) -> None:
        try:
            await self.step()
        except Exception as exc:  # the API is away or refuses: try again next round (said once)
            said, self._failure = self._failure, str(exc)
            level = logging.DEBUG if said == self._failure else logging.WARNING
            log.log(level, "MeshConfig status round failed: %s", exc)
        else:
            self._failure = None

    async def step(self) -> bool:
        """One round: hold the lease, and if held, write the status when it changed. True if written."""
        me = self.view.identity.name
        held = await self._hold(me)
        if held != self.holding:
            log.info("%s the MeshConfig status lease", "holding" if held else "lost")
            self.holding, self._written, self._counted = held, None, None
        if not held:
            self.events.forget("cluster")
            return False
        error = self.config_error()
        last = self.view.last
        problems = last[0].problems if last else ()
        found = [*cluster_events(me, problems), *([rejected_event(me, error)] if error else [])]
        self.events.observe("cluster", found)
        generation, now = self.generation(), self.clock()
        if generation is None or not self._due(generation, error, now):
            return False
        nodes = await self.store.list_meshnodes()
        self._counted = (generation, error, now)
        status = meshconfig_status(generation, nodes, rejected=error, now=now, previous=self._written)
        if status == self._written:
            return False
        await self.store.write_meshconfig_status(status)
        self._written = status
        return True

    async def _hold(self, me: str) -> bool:
        """The holder and the candidates try each round; the others only when their look is due."""
        if self.holding or self.contends():
            self._look_at = None
            return await self.store.hold_lease(me, duration=self.lease_duration)
        now = asyncio.get_running_loop().time()
        if self._look_at is None:  # the first look, spread over the mean gap
            self._look_at = now + self.rng.uniform(0.0, self.look_every)
        if now < self._look_at:
            return False
        # Gaps from just over a lease duration to nearly twice the mean: some agent's two looks soon fall
        # close together after a holder dies, so a large cluster notices within about half a minute.
        least = self.lease_duration + self.interval
        self._look_at = now + self.rng.uniform(least, max(least, 2 * self.look_every - least))
        if not await self.store.hold_lease(me, duration=self.lease_duration):
            return False
        self._look_at = None  # it took the lease over: renewed each round from now on, like any holder
        return True

    def _due(self, generation: int, error: str | None, now: float) -> bool:
        """Listing every MeshNode is the expensive part: each round for a minute after the MeshConfig
        changed (while the nodes apply it), then every `recount` seconds."""
        last = self._counted
        if last is None or last[:2] != (generation, error):
            self._changed_at = now
            return True
        return now - self._changed_at < 60 or now - last[2] >= self.recount
