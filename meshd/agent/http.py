"""The agent's HTTP endpoints, served on the agent's own event loop (no thread, no lock) by httpserver.py:

- on the metrics address: /metrics (per-peer figures read from the device at scrape time), /healthz, /readyz;
- on a unix socket (mode 0600) under the run directory: /status, the whole topology as JSON, for
  `meshd status` on this node only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshd.agent.health import Health
from meshd.agent.httpserver import Response, Routes, Server, serve_tcp, serve_unix, text
from meshd.agent.metrics import PeerCollector
from meshd.agent.view import MeshView
from meshd.core.rotation import REQUEST_TIMEOUT as ROTATE_TIMEOUT
from meshd.errors import ConfigError

log = logging.getLogger(__name__)
Rotate = Callable[[float], Awaitable[str]]
"""Rotates the key now, within a timeout; returns the new public key (meshd.agent.rotation)."""
JSON = "application/json; charset=utf-8"


def parse_addr(addr: str) -> tuple[str, int]:
    """`:9473`, `0.0.0.0:9473`, `[::]:9473` or `127.0.0.1:0` to (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics address {addr!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def serve_metrics(
    addr: str, registry: CollectorRegistry, health: Health, collector: PeerCollector
) -> Server:
    async def metrics() -> Response:
        await collector.refresh()
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    async def healthz() -> Response:
        return text(200 if health.alive else 503, "ok" if health.alive else "dead")

    async def readyz() -> Response:
        return text(*health.readyz())

    routes: Routes = {"/metrics": {"GET": metrics}, "/healthz": {"GET": healthz}, "/readyz": {"GET": readyz}}
    host, port = parse_addr(addr)
    try:
        server = await serve_tcp(routes, host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {addr}: {exc.strerror}") from exc
    log.info("serving /metrics, /healthz, /readyz on %s", ", ".join(map(str, server.addresses)))
    return server


async def serve_status(path: Path, view: MeshView, rotate: Rotate | None = None) -> Server:
    """/status (and POST /rotate: `meshd keys rotate`) on a unix socket only root can connect to."""

    async def status() -> Response:
        return _json(await view.status(), pretty=True)

    async def rotate_now() -> Response:
        if rotate is None:
            return text(409, "this node has no WireGuard key to rotate")
        try:
            public_key = await rotate(ROTATE_TIMEOUT)
        except TimeoutError:
            return text(504, f"the key rotation did not finish within {ROTATE_TIMEOUT:.0f} s; it goes on")
        return _json({"rotated": True, "publicKey": public_key})

    sock = _bind_private(path)
    try:
        server = await serve_unix({"/status": {"GET": status}, "/rotate": {"POST": rotate_now}}, sock, path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror}") from exc
    log.info("serving /status on %s", path)
    return server


def _json(doc: object, *, pretty: bool = False) -> Response:
    body = json.dumps(doc, indent=2, sort_keys=True) if pretty else json.dumps(doc)
    return Response(200, body.encode(), JSON)


def _bind_private(path: Path) -> socket.socket:
    """Bind under a temporary name, make it 0600, then move it into place: never connectable wider."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot create the status socket {path}: {exc.strerror}") from exc
    return sock
