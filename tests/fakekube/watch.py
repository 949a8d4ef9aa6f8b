"""The fake API server's watch stream: the backlog since a resourceVersion, then live events, with
bookmarks, a timeout and an ERROR event for a compacted resourceVersion, as the real API server sends."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from tests.fakekube.store import KINDS, ApiError, Event, Obj, Store, matches

TRUE = ("1", "true", "True")


async def watch(
    request: web.Request,
    store: Store,
    resource: str,
    streams: set[asyncio.Transport],
    bookmark_interval: float,
) -> web.StreamResponse:
    q, k, loop = request.query, KINDS[resource], asyncio.get_running_loop()
    bookmarks = q.get("allowWatchBookmarks") in TRUE
    deadline = loop.time() + float(q.get("timeoutSeconds") or 1800)
    rv = q.get("resourceVersion") or "0"
    if not rv.isdigit():
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv!r}")
    sel = (q.get("labelSelector"), q.get("fieldSelector"))
    # Read the backlog and subscribe with no await in between: no event is lost or sent twice.
    try:
        if rv == "0":
            first = [("ADDED", o) for o in store.list_objects(resource, *sel)["items"]]
        else:
            first = [(e.type, e.object) for e in store.events_since(resource, int(rv))]
        error = None
    except ApiError as err:
        first, error = [], err
    queue: asyncio.Queue[Event] = asyncio.Queue()
    unsubscribe = store.subscribe(resource, queue.put_nowait)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    if request.transport is not None:
        streams.add(request.transport)

    async def send(kind: str, obj: Obj) -> None:
        await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    def bookmark() -> Obj:
        return {
            "kind": k.kind,
            "apiVersion": k.api_version,
            "metadata": {"resourceVersion": str(store.rv)},
        }

    try:
        if error is not None:
            await send("ERROR", error.status())
            return resp
        for kind, obj in first:
            if matches(obj, *sel):
                await send(kind, obj)
        while (left := deadline - loop.time()) > 0:
            try:
                ev = await asyncio.wait_for(queue.get(), min(left, bookmark_interval) if bookmarks else left)
            except TimeoutError:
                if bookmarks and queue.empty() and deadline - loop.time() > 0:
                    await send("BOOKMARK", bookmark())
                continue
            if matches(ev.object, *sel):
                await send(ev.type, ev.object)
        if bookmarks:
            await send("BOOKMARK", bookmark())
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away or the server paused
    finally:
        unsubscribe()
        if request.transport is not None:
            streams.discard(request.transport)
    return resp
