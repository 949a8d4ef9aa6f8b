"""The agent's small HTTP server as clients meet it on the wire: raw requests in, status lines and headers
out, including the malformed, oversized, stalled and failing cases a web framework would handle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshd.agent import httpserver
from meshd.agent.httpserver import Response, Routes, Server, serve_tcp, serve_unix, text


async def hello() -> Response:
    return text(200, "hello")


async def broken() -> Response:
    raise RuntimeError("a bug in a handler")


async def posted() -> Response:
    return text(200, "posted")


ROUTES: Routes = {"/hello": {"GET": hello}, "/broken": {"GET": broken}, "/post": {"POST": posted}}


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = await serve_tcp(ROUTES, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.cleanup()


async def exchange(srv: Server, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of the answer to `raw`, read until the server closes."""
    host, port = srv.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


async def test_a_route_answers_with_length_and_closes(server: Server) -> None:
    status, headers, body = await exchange(server, b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == "HTTP/1.1 200 OK" and body == b"hello\n"
    assert headers["content-length"] == "6" and headers["connection"] == "close"
    assert headers["content-type"] == "text/plain; charset=utf-8"


async def test_head_gives_the_get_headers_without_a_body(server: Server) -> None:
    status, headers, body = await exchange(server, b"HEAD /hello HTTP/1.1\r\n\r\n")
    assert (status, headers["content-length"], body) == ("HTTP/1.1 200 OK", "6", b"")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /hello HTTP/1.1\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"POST /post HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 411 Length Required"),
        (b"POST /post HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", "HTTP/1.1 413 Request Entity Too Large"),
        (b"GET /hello HTTP/1.1\r\nX: " + b"y" * (httpserver.MAX_HEAD + 10) + b"\r\n\r\n", "HTTP/1.1 431"),
        (b"GET /broken HTTP/1.1\r\n\r\n", "HTTP/1.1 500 Internal Server Error"),
    ],
    ids=[
        "unknown-path",
        "bad-request-line",
        "bad-length",
        "chunked",
        "body-too-large",
        "head-too-large",
        "bug",
    ],
)
async def test_what_cannot_be_served_gets_its_status(server: Server, raw: bytes, status: str) -> None:
    got, _, _ = await exchange(server, raw)
    assert got.startswith(status)
    assert (await exchange(server, b"GET /hello HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 200 OK"  # still serving


async def test_a_wrong_method_is_405_with_what_is_allowed(server: Server) -> None:
    status, headers, _ = await exchange(server, b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed" and headers["allow"] == "GET, HEAD"


async def test_a_post_body_is_read_before_the_answer(server: Server) -> None:
    status, _, body = await exchange(server, b"POST /post HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde")
    assert (status, body) == ("HTTP/1.1 200 OK", b"posted\n")


async def test_a_stalled_client_is_dropped_and_others_are_served(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpserver, "IO_TIMEOUT", 0.2)
    host, port = server.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /hello HTTP/1.1\r\n")  # and never the blank line
    assert (await exchange(server, b"GET /hello HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 200 OK"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()


async def test_cleanup_ends_open_connections_and_removes_the_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    srv = await serve_unix(ROUTES, sock, path)
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"GET /hello HTTP/1.1\r\n")  # a request still being read
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(srv.cleanup(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert not path.exists()
    writer.close()
