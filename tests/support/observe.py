"""What a user can look at on a lab node: `wg show`, owned routes, Prometheus text, the agent's log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshd.demo.netlab import Lab, LabNode


def wg_peers(lab: Lab, node: LabNode) -> set[str]:
    """Public keys of the peers on the node's WireGuard device (`wg show IF peers`)."""
    return set(lab.sh(node.ns, "wg", "show", node.wg_name, "peers", check=False).stdout.split())


def wg_show(lab: Lab, node: LabNode, field: str) -> str:
    """One field of `wg show IF FIELD` (public-key, listen-port, latest-handshakes, ...)."""
    return lab.sh(node.ns, "wg", "show", node.wg_name, field).stdout.strip()


def owned_routes(lab: Lab, node: LabNode) -> str:
    """The node's routes marked with meshd's route protocol, both families."""
    return (
        lab.ip(node.ns, "route", "show", "proto", "109").stdout
        + lab.ip(node.ns, "-6", "route", "show", "proto", "109").stdout
    )


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text, or None when it is absent."""
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def samples(text: str, name: str) -> list[str]:
    """Every sample line of one metric family (any labels)."""
    return [line for line in text.splitlines() if re.match(rf"{re.escape(name)}[{{ ]", line)]


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON log records an agent wrote (`--log-format json`); other lines are skipped."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def eventually(check: Callable[[], bool], *, timeout: float = 30, poll: float = 0.2) -> bool:
    """Poll `check` until it holds or `timeout` seconds pass; returns its last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll)
    return check()
