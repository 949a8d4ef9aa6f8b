"""A realistic fake Kubernetes API server over real HTTP (aiohttp), run on its own thread and event loop so
that both the sync `kubernetes` client and asyncio code under test can talk to it.

Control hooks exist twice: as thread-safe methods on `FakeKube` and as HTTP endpoints under `/_control/`
(for a server running in another process). See tests/test_fakekube.py for what they do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from tests.fakekube.store import KINDS, ApiError, Obj, Store, status_body
from tests.fakekube.watch import TRUE, watch

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FailRule:
    remaining: int
    status: int
    retry_after: float | None = None
    verb: str | None = None
    resource: str | None = None


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(obj, status=status, headers=headers)


def _verb(request: web.Request, name: str | None) -> str:
    if request.method == "GET":
        return "get" if name else ("watch" if request.query.get("watch") in TRUE else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[request.method]


class FakeKube:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, bookmark_interval: float = 1.0) -> None:
        self.host, self.port, self.bookmark_interval = host, port, bookmark_interval
        self.store = Store()
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.fail_rules: list[FailRule] = []
        self.touch_next: set[tuple[str, str, str]] = set()
        self.paused = False
        self._streams: set[asyncio.Transport] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeKube:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fakekube", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "preferences": {},
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }
        path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
        return path

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        for k in KINDS.values():
            app.router.add_route("*", k.prefix, self._collection)
            app.router.add_route("*", k.prefix + "/{name}", self._item)
            app.router.add_route("*", k.prefix + "/{name}/status", self._item)
        app.router.add_route("*", "/_control/{op}", self._control)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        self._drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- control hooks, thread-safe
    def _call(self, fn: Callable[[], T]) -> T:
        if self._loop is None or threading.current_thread() is self._thread:
            return fn()

        async def wrapped() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(10)

    def compact(self) -> int:
        return self._call(self.store.compact)

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        verb: str | None = None,
        resource: str | None = None,
    ) -> None:
        self._call(lambda: self.fail_rules.append(FailRule(count, status, retry_after, verb, resource)))

    def pause(self) -> None:
        def do() -> None:
            self.paused = True
            self._drop_streams()

        self._call(do)

    def resume(self) -> None:
        self._call(lambda: setattr(self, "paused", False))

    def count(self, verb: str | None = None, resource: str | None = None, name: str | None = None) -> int:
        def do() -> int:
            return sum(
                n
                for (v, r, o), n in self.counts.items()
                if verb in (None, v) and resource in (None, r) and name in (None, o)
            )

        return self._call(do)

    def reset_counts(self) -> None:
        self._call(self.counts.clear)

    def touch_before_next(self, verb: str, resource: str, name: str) -> None:
        """Before the next `verb` on that object, someone else modifies it (its resourceVersion moves on)."""
        self._call(lambda: self.touch_next.add((verb, resource, name)))

    def put(self, resource: str, obj: Obj) -> Obj:
        """Create or replace (unconditionally) an object, as another client would."""

        def do() -> Obj:
            name = obj["metadata"]["name"]
            if name in self.store.objects[resource]:
                body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": ""}}
                return self.store.update(resource, name, body)
            return self.store.create(resource, obj)

        return self._call(do)

    def remove(self, resource: str, name: str) -> Obj:
        return self._call(lambda: self.store.delete(resource, name))

    def get(self, resource: str, name: str) -> Obj:
        return self._call(lambda: self.store.get(resource, name))

    def _drop_streams(self) -> None:
        for transport in list(self._streams):
            transport.close()
        self._streams.clear()

    # -- HTTP
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_control/"):
            return await handler(request)
        if self.paused:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        name = request.match_info.get("name")
        resource = next((r for r, k in KINDS.items() if request.path.startswith(k.prefix)), "?")
        verb = _verb(request, name)
        self.counts[(verb, resource, name or "")] += 1
        for rule in self.fail_rules:
            if rule.remaining > 0 and rule.verb in (None, verb) and rule.resource in (None, resource):
                rule.remaining -= 1
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
                return _json(status_body(rule.status, "Injected", "injected failure"), rule.status, headers)
        if name and (verb, resource, name) in self.touch_next:
            self.touch_next.discard((verb, resource, name))
            with contextlib.suppress(ApiError):
                n = str(self.store.rv)
                self.store.patch(
                    resource,
                    name,
                    "application/merge-patch+json",
                    {"metadata": {"annotations": {"fakekube/touched": n}}},
                )
        try:
            return await handler(request)
        except ApiError as err:
            return _json(err.status(), err.code)

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            raise ApiError(400, "BadRequest", "request body is not JSON") from None

    def _resource(self, request: web.Request) -> str:
        return next(r for r, k in KINDS.items() if request.path.startswith(k.prefix))

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource, q = self._resource(request), request.query
        if request.method == "POST":
            return _json(self.store.create(resource, await self._body(request)), 201)
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", request.method)
        if q.get("watch") in TRUE:
            return await watch(request, self.store, resource, self._streams, self.bookmark_interval)
        return _json(self.store.list_objects(resource, q.get("labelSelector"), q.get("fieldSelector")))

    async def _item(self, request: web.Request) -> web.StreamResponse:
        resource, name = self._resource(request), request.match_info["name"]
        if request.method == "GET":
            return _json(self.store.get(resource, name))
        if request.method == "PUT":
            return _json(self.store.update(resource, name, await self._body(request)))
        if request.method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            return _json(self.store.patch(resource, name, ctype, await self._body(request)))
        if request.method == "DELETE":
            return _json(self.store.delete(resource, name))
        raise ApiError(405, "MethodNotAllowed", request.method)

    async def _control(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        args: dict[str, Any] = (await request.json()) if request.can_read_body else {}
        args.update(request.query)
        actions: dict[str, Callable[[], Any]] = {
            "compact": lambda: {"compacted": self.store.compact()},
            "fail": lambda: self.fail_next(
                int(args["count"]),
                int(args["status"]),
                retry_after=args.get("retry_after"),
                verb=args.get("verb"),
                resource=args.get("resource"),
            ),
            "pause": self.pause,
            "resume": self.resume,
            "count": lambda: {"count": self.count(args.get("verb"), args.get("resource"), args.get("name"))},
            "reset-counts": self.reset_counts,
            "touch": lambda: self.touch_before_next(args["verb"], args["resource"], args["name"]),
            # a write by another client through another API server replica: works while paused
            "put": lambda: self.put(args["resource"], args["object"]),
        }
        if op not in actions:
            return _json(status_body(404, "NotFound", f"no control op {op!r}"), 404)
        return _json(actions[op]() or {})
