"""`meshd status [--json]`: the local mesh as the running agent sees it, from its /status endpoint, which
the agent serves only on a unix socket under its run directory (mode 0600), never on the network."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import time
from pathlib import Path

from meshd.agent.settings import status_socket
from meshd.cli.flags import add_run_dir_flag
from meshd.core.status import render_table
from meshd.errors import ConfigError
from meshd.pq.report import render as render_pq


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show the local mesh: peers, transport, handshakes, traffic")
    p.add_argument("--json", action="store_true", help="print the raw JSON document")
    add_run_dir_flag(p)
    p.set_defaults(func=handle)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def call_agent(run_dir: Path, method: str, path: str, *, timeout: float = 5) -> bytes:
    """One request to the running agent's local socket; the body of a 200 answer, else ConfigError."""
    sock = status_socket(run_dir)
    conn = _UnixConnection(sock, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        raise ConfigError(f"no meshd agent answers on {sock} ({exc}); is `meshd run` running?") from exc
    finally:
        conn.close()
    if resp.status != 200:
        detail = body.decode("utf-8", "replace").strip()[:200]
        raise ConfigError(f"the agent on {sock} answered {resp.status} {resp.reason}: {detail}")
    return body


def fetch_status(run_dir: Path, *, timeout: float = 5) -> dict[str, object]:
    doc: dict[str, object] = json.loads(call_agent(run_dir, "GET", "/status", timeout=timeout))
    return doc


def handle(args: argparse.Namespace) -> int:
    doc = fetch_status(Path(args.run_dir))
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_table(doc, now=time.time()))
        if pq := render_pq(doc):
            print(pq)
    return 0
