"""The Kubernetes datastore's watch recovers: bookmarks and 410, retries and Retry-After, outages, a
forbidden list, malformed watch events. No wall-clock assertions: every wait is a bounded wait on a
condition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from meshd.datastore.k8s_api import TransientApiError
from meshd.datastore.k8s_watch import Backoff, Reflector, with_retries
from meshd.datastore.kubernetes import KubernetesDatastore
from tests.fakekube import FakeKube
from tests.support.kubeds import KEY, PUB, errors_fixture, kube_fixture, make_ds_fixture  # noqa: F401 - fixtures
from tests.support.kubeds import config as _config
from tests.support.kubeds import names as _names
from tests.support.kubeds import node as _node
from tests.support.kubeds import started as _started
from tests.support.kubeds import until as _until
from tests.support.kubeds import until_changed as _until_changed


def _resume_point(ds: KubernetesDatastore, resource: str) -> str | None:
    """The resourceVersion the next watch of `resource` resumes from (None: a list comes first)."""
    return next(r.resource_version for r in ds._reflectors if r.resource == resource)


async def test_bookmarks_let_a_resumed_watch_survive_compaction(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("a", 1))
    ds = await _started(make_ds)
    for i in range(5):  # writes the node watch never sees: only bookmarks move its resume point
        kube.put("meshconfigs", _config("Enabled", name=f"other-{i}"))
    target = kube.store.rv
    await _until(lambda: int(_resume_point(ds, "nodes") or 0) >= target)
    lists = kube.count("list", "nodes")
    kube.compact()
    kube.pause()  # drops the watch streams: the adapter must resume from its bookmark
    kube.resume()
    kube.put("nodes", _node("late", 5))
    await _until_changed(ds, lambda s: _names(s) == ["a", "late"])
    assert kube.count("list", "nodes") == lists, "resumed from the bookmark: no 410, no relist"


async def test_expired_resume_point_relists(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    kube.put("nodes", _node("b", 2))
    ds = await _started(make_ds)
    lists = kube.count("list", "nodes")
    kube.pause()
    kube.remove("nodes", "b")  # an event the adapter cannot see before the compaction
    kube.put("nodes", _node("c", 3))
    kube.compact()
    kube.resume()
    snap = await _until_changed(ds, lambda s: _names(s) == ["a", "c"])
    assert snap.synced
    assert kube.count("list", "nodes") > lists
    assert "expired" in errors


async def test_server_errors_are_retried(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    kube.fail_next(3, 500, verb="list", resource="nodes")
    kube.fail_next(2, 429, retry_after=0.1, verb="list", resource="meshconfigs")
    ds = await _started(make_ds)
    assert _names(ds.snapshot()) == ["a"]
    assert errors.count("server") == 3
    assert errors.count("throttled") == 2


async def test_retry_after_sets_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    answers: list[Exception | None] = [
        TransientApiError(429, "TooManyRequests", "slow down", retry_after=7),
        TransientApiError(503, "ServiceUnavailable", "busy"),
        None,
    ]

    async def call() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "done"

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    backoff = Backoff(initial=0.5, maximum=2, jitter=0.1)
    assert await with_retries(call, backoff, what="test", on_error=lambda _: None) == "done"
    assert delays[0] == 7, "a 429's Retry-After sets the delay"
    assert 0 < delays[1] <= 2.1, "a 5xx without Retry-After backs off exponentially, capped"


async def test_outage_then_catch_up(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    ds = await _started(make_ds)
    kube.pause()
    kube.put("nodes", _node("meanwhile", 2))
    await _until(lambda: errors.count("connection") >= 3)
    assert ds.failure is None, "connection errors never stop the watch"
    kube.resume()
    await _until_changed(ds, lambda s: _names(s) == ["a", "meanwhile"])


async def test_forbidden_list_is_a_clear_failure_retried_until_it_passes(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.fail_next(2, 403, verb="list", resource="nodes")
    ds = make_ds()
    await ds.start()
    await _until(lambda: ds.failure is not None)
    assert "nodes: 403" in (ds.failure or "")
    assert not ds.snapshot().synced, "without the node list nothing may be garbage-collected"
    assert "forbidden" in errors
    await _until(lambda: ds.snapshot().synced)  # RBAC fixed (or the API server's caches synced)
    assert ds.failure is None
    assert kube.count("list", "nodes") == 3, "two refusals, then the list that passed"


class ScriptedApi:
    """A KubeApi stand-in whose watch streams are scripted, to feed the reflector what no sane server
    sends (the fake API server only sends well-formed events)."""

    def __init__(self, streams: list[list[Any]]) -> None:
        self.streams, self.lists = streams, 0

    async def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return [_node(f"n{self.lists}", self.lists)], str(self.lists * 100)

    async def watch(
        self, resource: str, resource_version: str, *, server_timeout: int, on_open: Callable[[], None]
    ) -> AsyncIterator[Any]:
        on_open()
        for event in self.streams.pop(0) if self.streams else []:
            yield event
        if not self.streams:
            await asyncio.Event().wait()  # then a quiet, open stream


@pytest.mark.parametrize(
    "garbage",
    [
        {"type": "ADDED", "object": {"metadata": "not-a-dict"}},
        {"type": "ERROR", "object": {"code": "not-a-number"}},
        {"type": "MODIFIED"},
        "not-an-event",
    ],
    ids=["metadata-not-a-dict", "error-code-not-a-number", "no-object", "not-a-dict"],
)
async def test_a_malformed_watch_event_relists_instead_of_killing_the_watch(garbage: Any) -> None:

    api = ScriptedApi([[garbage]])
    listed: list[list[str]] = []
    events: list[tuple[str, str]] = []
    reflector = Reflector(
        api,  # type: ignore[arg-type]
        "nodes",
        on_list=lambda items: listed.append([i["metadata"]["name"] for i in items]),
        on_event=lambda kind, obj: events.append((obj["metadata"]["name"], kind)),
        on_error=lambda kind: None,
        backoff=Backoff(initial=0.01, maximum=0.05, jitter=0),
        watch_timeout=60,
        resync=0,
    )
    task = asyncio.create_task(reflector.run())
    try:
        await _until(lambda: len(listed) >= 2)
    finally:
        task.cancel()
    assert listed[:2] == [["n1"], ["n2"]] and reflector.failure is None
