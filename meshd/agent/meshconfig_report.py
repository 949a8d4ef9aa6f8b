"""The MeshConfig status, written by whichever agent holds the lease (no single point of failure: every
agent runs this and tries for the lease each round; when the holder dies another takes over). The holder
also speaks for the cluster in Events: conflicts that left nodes out and a rejected MeshConfig."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshd.agent.events import EventRecorder
from meshd.agent.view import MeshView
from meshd.core.events import cluster_events, rejected_event
from meshd.core.meshconfig_status import meshconfig_status
from meshd.core.ports import StatusStore

log = logging.getLogger(__name__)


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
    holding: bool = False
    _written: dict[str, Any] | None = None
    _counted: tuple[int, str | None, float] | None = None  # (generation, rejection, when) of the last list
    _changed_at: float = 0.0
    _failure: str | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as exc:  # the API is away or refuses: try again next round (said once)
                said, self._failure = self._failure, str(exc)
                log.log(
                    logging.DEBUG if said == self._failure else logging.WARNING,
                    "MeshConfig status round failed: %s",
                    exc,
                )
            else:
                self._failure = None
            await self.events.flush()
            await asyncio.sleep(self.interval)

    async def step(self) -> bool:
        """One round: hold the lease, and if held, write the status when it changed. True if written."""
        me = self.view.identity.name
        held = await self.store.hold_lease(me, duration=self.lease_duration)
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

    def _due(self, generation: int, error: str | None, now: float) -> bool:
        """Listing every MeshNode is the expensive part: each round for a minute after the MeshConfig
        changed (while the nodes apply it), then every `recount` seconds."""
        last = self._counted
        if last is None or last[:2] != (generation, error):
            self._changed_at = now
            return True
        return now - self._changed_at < 60 or now - last[2] >= self.recount
