"""Tables the demo prints."""

from __future__ import annotations

import time
from dataclasses import dataclass

from meshd.core.status import render_table
from meshd.demo.agents import Mesh


@dataclass
class Figures:
    converge_seconds: float
    wireguard_bps: float = 0.0
    vxlan_bps: float = 0.0
    loss_off: tuple[int, int] | None = None
    loss_on: tuple[int, int] | None = None


def render_peers(mesh: Mesh) -> str:
    now = time.time()
    parts = []
    for agent in mesh.agents:
        doc = agent.status(mesh.lab)
        parts.append(render_table(doc, now=now) if doc else f"{agent.node.name}: no status")
    return "\n\n".join(["", *parts])


def render_matrix(mesh: Mesh) -> str:
    names = [n.name for n in mesh.nodes]
    width = max(len(x) for x in names) + 2
    lines = [
        "\npod-to-pod reachability (ping, every address family):",
        " " * width + "".join(x.ljust(width) for x in names),
    ]
    for a in mesh.nodes:
        row = [
            ("-" if a is b else ("ok" if mesh.reachable(a, b) else "FAIL")).ljust(width) for b in mesh.nodes
        ]
        lines.append(a.name.ljust(width) + "".join(row))
    return "\n".join(lines)


def _loss(x: tuple[int, int] | None) -> str:
    return "-" if x is None else f"{x[0] - x[1]} of {x[0]} lost"


def render_summary(f: Figures) -> str:
    ratio = f.wireguard_bps / f.vxlan_bps if f.vxlan_bps else 0.0
    rows = [
        ("mesh converged (WireGuard)", f"{f.converge_seconds:.1f} s"),
        ("iperf3 pod->pod over WireGuard", f"{f.wireguard_bps / 1e9:.2f} Gbit/s"),
        ("iperf3 pod->pod over VXLAN", f"{f.vxlan_bps / 1e9:.2f} Gbit/s"),
        ("WireGuard / VXLAN throughput", f"{ratio:.2f}"),
        ("20 Hz ping, Enabled -> Disabled", _loss(f.loss_off)),
        ("20 Hz ping, Disabled -> Enabled", _loss(f.loss_on)),
    ]
    w = max(len(r[0]) for r in rows)
    return "\nsummary\n" + "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)
