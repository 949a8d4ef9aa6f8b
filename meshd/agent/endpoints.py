"""When the agent's HTTP endpoints (meshd.agent.http: /metrics, /healthz, /readyz, and /status on its unix
socket) start: once the first pass published our record and no pass ran for QUIET seconds after it, or
START_WITHIN seconds after start, whichever comes first. The web framework (aiohttp) is imported then, in a
worker thread: its import is about a tenth of a second of CPU, which in a thread still takes the
interpreter from the loop half of the time; right after our first publish the other nodes of a forming mesh
publish theirs and a node joining waits for our pass that adds it, while no probe asks before START_WITHIN
(the DaemonSet's liveness probe waits 10 s, its readiness probe 2 s)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from meshd.agent.health import Health
from meshd.agent.metrics import PeerCollector
from meshd.agent.passes import AfterPass
from meshd.agent.view import MeshView
from meshd.core.model import LocalNode
from meshd.core.state import DesiredState

log = logging.getLogger(__name__)
START_WITHIN = 2.0
"""Seconds after the agent started by which the endpoints serve, published or not, passes running or not (a
datastore that does not sync must not keep /healthz and /readyz away)."""
QUIET = 0.25
"""Seconds without a pass, after our publish, before the endpoints start: the passes that follow it first."""


@dataclass
class Endpoints:
    metrics_addr: str
    registry: CollectorRegistry
    health: Health
    collector: PeerCollector
    status_socket: Path
    view: MeshView
    rotate: Callable[[float], Awaitable[str]] | None = None
    _published: asyncio.Event = field(default_factory=asyncio.Event)
    _runners: list[Any] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def published_hook(self) -> AfterPass:
        """The after-publish hook that lets the endpoints start."""

        async def published(local: LocalNode, desired: DesiredState) -> None:
            self._published.set()

        return published

    def start(self) -> asyncio.Task[None]:
        """The task that starts the endpoints when due; it fails (ConfigError) when a listen fails."""
        self._task = asyncio.create_task(self._serve(), name="endpoints")
        return self._task

    async def _due(self) -> str:
        """Wait until the endpoints are due; why they are."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WITHIN
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), START_WITHIN)
        if not self._published.is_set():
            return f"no publish within {START_WITHIN} s"
        view = self.view
        while True:
            now = loop.time()
            if not view.passing and now >= view.passed_at + QUIET:
                return f"our record is published, no pass for {QUIET} s"
            if now >= deadline:
                return f"passes still running {START_WITHIN} s after start"
            wake = view.passed_at + QUIET if not view.passing else now + QUIET / 5
            await asyncio.sleep(min(max(wake, now + 0.01), deadline) - now)

    async def _serve(self) -> None:
        log.info("starting the HTTP endpoints (%s)", await self._due())
        # aiohttp's web server, imported in a worker thread: its ~0.1 s import must not hold the loop
        await asyncio.to_thread(importlib.import_module, "meshd.agent.http")
        from meshd.agent.http import serve_metrics, serve_status

        self._runners.append(
            await serve_metrics(self.metrics_addr, self.registry, self.health, self.collector)
        )
        self._runners.append(await serve_status(self.status_socket, self.view, self.rotate))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
