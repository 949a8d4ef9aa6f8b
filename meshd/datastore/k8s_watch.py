"""LIST then WATCH one collection forever (a small client-go reflector), and the retry policy.

- A watch resumes from the last resourceVersion seen, bookmarks included, so a reconnect replays nothing
  and a compaction does not force a relist as long as bookmarks keep the resume point fresh.
- 410 Gone (on the stream or as an answer) means the resume point was compacted away: relist.
- Connection errors, 429 (after Retry-After) and 5xx are retried with tenacity: capped exponential backoff
  with jitter. 401 and 403 are reported as the reflector's failure and retried (backing off up to `maximum`)
  until a request succeeds (RBAC gets fixed; an API server that just restarted refuses until its authorizer's
  caches sync). Any other 4xx is never retried: it is logged, counted, and the reflector stops (except a
  404 on the MeshConfig collection: no CRD installed yet means defaults, looked at again every `resync`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_never

from meshd.datastore.k8s_api import (
    MESHCONFIGS,
    ApiError,
    ApiUnavailable,
    KubeApi,
    Obj,
    PermanentApiError,
    api_error,
)
from meshd.errors import TransientError
from meshd.retry import Backoff

__all__ = ["Backoff", "Reflector", "error_kind", "retrying", "with_retries"]
log = logging.getLogger(__name__)
T = TypeVar("T")
OnError = Callable[[str], None]


def error_kind(exc: BaseException) -> str:
    """A short, bounded label for metrics."""
    if isinstance(exc, ApiUnavailable):
        return "connection"
    if isinstance(exc, ApiError):
        named = {429: "throttled", 410: "expired", 409: "conflict", 403: "forbidden", 404: "not-found"}
        return named.get(exc.status, "server" if exc.status >= 500 else "client")
    return "other"


def retrying(backoff: Backoff, *, what: str, on_error: OnError, attempts: int | None = None) -> AsyncRetrying:
    """Retry only TransientError (connection, 429, 5xx); honour Retry-After; log and count each failure."""
    expo = backoff.wait()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return min(exc.retry_after, backoff.max_retry_after)
        return float(expo(state))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            on_error(error_kind(exc))
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s failed (attempt %d), retrying in %.1fs: %s", what, state.attempt_number, sleep, exc)

    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait,
        stop=stop_after_attempt(attempts) if attempts is not None else stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )


async def with_retries(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    what: str,
    on_error: OnError,
    attempts: int | None = None,
) -> T:
    async for attempt in retrying(backoff, what=what, on_error=on_error, attempts=attempts):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises")


class _Expired(Exception):
    """The resume point was compacted away (410 Gone)."""


class MalformedEvent(TransientError):
    """A watch event we could not handle: start over from a fresh list, after the usual backoff."""


class Reflector:
    """Keeps a consumer up to date with one collection: `on_list(items)` after each (re)list,
    `on_event(type, obj)` for each ADDED/MODIFIED/DELETED."""

    def __init__(
        self,
        api: KubeApi,
        resource: str,
        *,
        on_list: Callable[[list[Obj]], None],
        on_event: Callable[[str, Obj], None],
        on_error: OnError,
        backoff: Backoff,
        watch_timeout: int,
        resync: float,
    ) -> None:
        self.api, self.resource = api, resource
        self._on_list, self._on_event, self._on_error = on_list, on_event, on_error
        self._backoff, self._watch_timeout, self._resync = backoff, watch_timeout, resync
        self.resource_version: str | None = None  # where the next watch resumes; None: list first
        self._listed_at = 0.0
        self.failure: ApiError | None = None
        self._refusals = 0

    async def run(self) -> None:
        while True:
            try:
                await with_retries(
                    self._step, self._backoff, what=f"watching {self.resource}", on_error=self._on_error
                )
            except PermanentApiError as exc:
                self._on_error(error_kind(exc))
                if exc.status == 404 and self.resource == MESHCONFIGS:
                    log.warning(
                        "no MeshConfig API (is the CRD installed?): defaults apply; looking again later"
                    )
                    self._on_list([])
                    await asyncio.sleep(self._resync or 60.0)
                    continue
                if exc.status in (401, 403):
                    await self._refused(exc)
                    continue
                log.error("stopped watching %s: %s (not retried)", self.resource, exc)
                self.failure = exc
                raise

    async def _refused(self, exc: ApiError) -> None:
        """401/403: report it (readiness fails with the reason) and keep trying, ever more slowly, up to
        every `maximum` seconds. RBAC can be fixed without restarting us, and a restarting API server refuses
        requests until its authorizer's caches have synced. The resume point is kept; the next list or
        accepted watch clears the failure."""
        if self.failure is None:
            log.error("watching %s refused: %s (retrying)", self.resource, exc)
            self._refusals = 0
        self.failure = exc
        await asyncio.sleep(min(self._backoff.maximum, self._backoff.initial * 2**self._refusals))
        self._refusals = min(self._refusals + 1, 16)

    def _accepted(self) -> None:
        self.failure = None

    async def _step(self) -> None:
        """(Re)list when needed, then follow one watch stream until the server ends it."""
        loop = asyncio.get_running_loop()
        if self.resource_version is None or (self._resync and loop.time() - self._listed_at >= self._resync):
            items, self.resource_version = await self.api.list(self.resource)
            self._listed_at, self.failure = loop.time(), None
            log.debug("listed %d %s at resourceVersion %s", len(items), self.resource, self.resource_version)
            self._on_list(items)
        try:
            if not await self._follow(self.resource_version):
                await asyncio.sleep(self._backoff.initial)  # an empty stream: do not spin
        except _Expired:
            self._on_error("expired")
            log.info(
                "%s watch from resourceVersion %s expired (410): relisting",
                self.resource,
                self.resource_version,
            )
            self.resource_version = None

    async def _follow(self, resource_version: str) -> bool:
        timeout = max(1, int(self._watch_timeout * random.uniform(0.8, 1.0)))  # spread reconnects
        seen = False
        try:
            stream = self.api.watch(
                self.resource, resource_version, server_timeout=timeout, on_open=self._accepted
            )
            async for event in stream:
                seen = True
                try:
                    self._handle(event)
                except (_Expired, ApiError):
                    raise
                except Exception as exc:
                    self.resource_version = None  # the stream cannot be trusted: relist
                    raise MalformedEvent(f"{self.resource} watch: unusable event ({exc!r:.200})") from exc
        except ApiError as exc:
            if exc.status == 410:
                raise _Expired from exc
            raise
        return seen

    def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = str(event.get("type")), event["object"]
        if kind == "ERROR":
            status = int(obj.get("code") or 500)
            if status == 410:
                raise _Expired
            raise api_error(status, obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._on_event(kind, obj)
        elif kind != "BOOKMARK":
            log.debug("ignoring %s event on the %s watch", kind, self.resource)
            return
        if rv:
            self.resource_version = str(rv)
