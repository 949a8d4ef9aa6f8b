"""The agent's HTTP endpoints, served by aiohttp on the agent's own event loop (no thread, no lock):

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
from functools import partial
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshd.agent.health import Health
from meshd.agent.metrics import PeerCollector
from meshd.agent.view import MeshView
from meshd.core.rotation import REQUEST_TIMEOUT as ROTATE_TIMEOUT
from meshd.errors import ConfigError

log = logging.getLogger(__name__)
Rotate = Callable[[float], Awaitable[str]]
"""Rotates the key now, within a timeout; returns the new public key (meshd.agent.rotation)."""


def parse_addr(addr: str) -> tuple[str, int]:
    """`:9473`, `0.0.0.0:9473`, `[::]:9473` or `127.0.0.1:0` to (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics address {addr!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def serve_metrics(
    addr: str, registry: CollectorRegistry, health: Health, collector: PeerCollector
) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        await collector.refresh()
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return _text(200 if health.alive else 503, "ok" if health.alive else "dead")

    async def readyz(_: web.Request) -> web.Response:
        return _text(*health.readyz())

    routes = [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    host, port = parse_addr(addr)
    runner = await _start(routes, partial(web.TCPSite, host=host, port=port), where=addr)
    log.info("serving /metrics, /healthz, /readyz on %s", ", ".join(map(str, runner.addresses)))
    return runner


async def serve_status(path: Path, view: MeshView, rotate: Rotate | None = None) -> web.AppRunner:
    """/status (and POST /rotate: `meshd keys rotate`) on a unix socket only root can connect to."""

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await view.status(), dumps=partial(json.dumps, indent=2, sort_keys=True))

    async def rotate_now(_: web.Request) -> web.Response:
        if rotate is None:
            return _text(409, "this node has no WireGuard key to rotate")
        try:
            public_key = await rotate(ROTATE_TIMEOUT)
        except TimeoutError:
            return _text(504, f"the key rotation did not finish within {ROTATE_TIMEOUT:.0f} s; it goes on")
        return web.json_response({"rotated": True, "publicKey": public_key})

    sock = _bind_private(path)
    routes = [web.get("/status", status), web.post("/rotate", rotate_now)]
    runner = await _start(routes, partial(web.SockSite, sock=sock), where=str(path), on_close=path)
    log.info("serving /status on %s", path)
    return runner


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


async def _start(
    routes: list[web.RouteDef],
    site: Callable[[web.AppRunner], web.BaseSite],
    *,
    where: str,
    on_close: Path | None = None,
) -> web.AppRunner:
    """Serve `routes` on `site`; `on_close`: a socket file to remove when the runner is cleaned up."""
    app = web.Application()
    app.add_routes(routes)
    if on_close is not None:
        app.on_cleanup.append(partial(_unlink, on_close))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await site(runner).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {where}: {exc.strerror}") from exc
    return runner


async def _unlink(path: Path, _: web.Application) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _text(code: int, text: str) -> web.Response:
    return web.Response(status=code, text=text + "\n", content_type="text/plain", charset="utf-8")
