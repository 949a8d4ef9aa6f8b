"""`meshd status [--json]`: the local mesh as the running agent sees it (from its /status endpoint)."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request

from meshd.agent.http import parse_addr
from meshd.agent.settings import env
from meshd.core.status import render_table
from meshd.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show the local mesh: peers, transport, handshakes, traffic")
    p.add_argument("--json", action="store_true", help="print the raw JSON document")
    p.add_argument(
        "--metrics-addr",
        default=env("METRICS_ADDR", ":9473"),
        help="the agent's metrics address [MESHD_METRICS_ADDR]",
    )
    p.set_defaults(func=handle)


def fetch_status(addr: str, *, timeout: float = 5) -> dict[str, object]:
    host, port = parse_addr(addr)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc: dict[str, object] = json.loads(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(
            f"no meshd agent answers on {host}:{port} ({exc}); is `meshd run` running?"
        ) from exc
    return doc


def handle(args: argparse.Namespace) -> int:
    doc = fetch_status(args.metrics_addr)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_table(doc, now=time.time()))
    return 0
