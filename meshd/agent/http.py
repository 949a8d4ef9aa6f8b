"""The agent's HTTP endpoint: /metrics, /healthz, /readyz and /status (JSON for `meshd status`).

A stdlib threading server in a daemon thread: it reads only immutable values the loop publishes, so it
never blocks the event loop and needs no lock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What /healthz and /readyz report. The loop replaces fields; readers only read them."""

    alive: bool = True
    synced: bool = False
    last_pass_ok: bool = False
    detail: str = "starting"
    status: Callable[[], dict[str, Any]] = field(default=lambda: {})
    refresh: Callable[[], None] = field(default=lambda: None)  # update scrape-time gauges

    @property
    def ready(self) -> bool:
        return self.alive and self.synced and self.last_pass_ok


def parse_addr(addr: str) -> tuple[str, int]:
    """`:9473`, `0.0.0.0:9473`, `[::]:9473` or `127.0.0.1:0` to (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics address {addr!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(addr: str, registry: CollectorRegistry, health: Health) -> ThreadingHTTPServer:
    host, port = parse_addr(addr)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                health.refresh()
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._text(200 if health.alive else 503, "ok" if health.alive else "dead")
            elif path == "/readyz":
                self._text(200 if health.ready else 503, "ok" if health.ready else health.detail)
            elif path == "/status":
                body = json.dumps(health.status(), indent=2, sort_keys=True).encode()
                self._send(200, body, "application/json")
            else:
                self._text(404, "not found")

        def _text(self, code: int, text: str) -> None:
            self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    family_v6 = ":" in host
    server_cls = type("Server", (ThreadingHTTPServer,), {"address_family": 10 if family_v6 else 2})
    try:
        server: ThreadingHTTPServer = server_cls((host, port), Handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {addr}: {exc.strerror}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="meshd-http", daemon=True).start()
    log.info("serving /metrics, /healthz, /readyz, /status on %s:%d", host, server.server_address[1])
    return server
