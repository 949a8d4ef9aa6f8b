"""A small HTTP/1.1 server on asyncio streams for the agent's few endpoints (http.py): one request per
connection (`Connection: close`), a bounded request head read within a timeout, GET routes answering HEAD
too, 404/405/400/431/500 as a web framework gives them. The agent's endpoints need no more than this, and
a web framework's import is a tenth of a second of every agent start (aiohttp builds an SSL context at
import); the Kubernetes datastore still brings aiohttp, as its client's transport only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MAX_HEAD = 16 * 1024
"""Bytes of request line and headers; more is answered 431."""
MAX_BODY = 64 * 1024
"""Bytes of request body read (and dropped: no endpoint takes one); more is answered 413."""
IO_TIMEOUT = 10.0
"""Seconds to read a request's head and body, and to write the answer (a client that stalls is dropped)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


Handler = Callable[[], Awaitable[Response]]
Routes = Mapping[str, Mapping[str, Handler]]
"""path -> method -> handler; a GET route answers HEAD too (headers only)."""


class Server:
    """A listening server; `cleanup()` stops it, ends open connections and removes its socket file."""

    def __init__(self, server: asyncio.Server, tasks: set[asyncio.Task[None]], unlink: Path | None) -> None:
        self._server, self._tasks, self._unlink = server, tasks, unlink

    @property
    def addresses(self) -> list[Any]:
        """Each listening socket's address, as `socket.getsockname()` gives it."""
        return [s.getsockname() for s in self._server.sockets]

    async def cleanup(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self._unlink is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unlink)


async def serve_tcp(routes: Routes, host: str, port: int) -> Server:
    tasks: set[asyncio.Task[None]] = set()
    server = await asyncio.start_server(_connection(routes, tasks), host, port, limit=MAX_HEAD)
    return Server(server, tasks, None)


async def serve_unix(routes: Routes, sock: socket.socket, path: Path) -> Server:
    """Serve on a bound unix socket; `path` (its file) is removed by `cleanup()`."""
    tasks: set[asyncio.Task[None]] = set()
    server = await asyncio.start_unix_server(_connection(routes, tasks), sock=sock, limit=MAX_HEAD)
    return Server(server, tasks, path)


def _connection(
    routes: Routes, tasks: set[asyncio.Task[None]]
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _serve_one(routes, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return handle


async def _serve_one(routes: Routes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    method, head = "GET", b""
    async with asyncio.timeout(IO_TIMEOUT):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            answer: Response | None = text(431, "request head too large")
        else:
            method, answer = await _read_request(head, reader)
    if answer is None:
        answer = await _dispatch(routes, method, head)
    async with asyncio.timeout(IO_TIMEOUT):
        writer.write(_encode(answer, head_only=method == "HEAD"))
        await writer.drain()


async def _read_request(head: bytes, reader: asyncio.StreamReader) -> tuple[str, Response | None]:
    """(method, an early answer or None): checks the request line and reads the body, if any."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
        return "GET", text(400, "bad request line")
    method = parts[0].decode("ascii")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            if not value.strip().isdigit():
                return method, text(400, "bad Content-Length")
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            return method, text(411, "a body needs a Content-Length")
    if length > MAX_BODY:
        return method, text(413, "request body too large")
    if length:
        await reader.readexactly(length)
    return method, None


async def _dispatch(routes: Routes, method: str, head: bytes) -> Response:
    target = head.split(b" ", 2)[1].decode("latin-1")
    methods = routes.get(target.partition("?")[0])
    if methods is None:
        return text(404, "not found")
    handler = methods.get("GET" if method == "HEAD" and "HEAD" not in methods else method)
    if handler is None:
        allow = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
        return Response(405, b"method not allowed\n", headers=(("Allow", allow),))
    try:
        return await handler()
    except Exception:
        log.exception("answering %s %s failed", method, target)
        return text(500, "internal error")


def _encode(response: Response, *, head_only: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + response.body
