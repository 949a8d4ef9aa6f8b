"""MeshNode write rate: N real agents (file datastore, wireguard-go) at steady state over more than one
resync period, then during an encryption toggle and back, counting every MeshNode write (the agents log
each one). The baseline measured in the same run is the number of reconcile passes in the same windows:
without change detection every pass would be a write.

Run as root: .venv/bin/python -m bench.status_writes [--nodes 8] [--idle 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster


def count(mesh: Mesh, prefix: str) -> int:
    total = 0
    for agent in mesh.agents:
        for line in agent.log_path.read_text(errors="replace").splitlines():
            try:
                msg = str(json.loads(line).get("msg", ""))
            except ValueError:
                continue
            total += msg.startswith(prefix)
    return total


def passes(mesh: Mesh) -> int:
    """Reconcile passes so far, from each agent's /metrics."""
    total = 0.0
    for agent in mesh.agents:
        _, text = agent.http_get(mesh.lab, "/metrics")
        total += sum(
            float(x.split()[-1]) for x in text.splitlines() if x.startswith("meshd_reconciles_total ")
        )
    return int(total)


def converge(mesh: Mesh, transport: str, timeout: float = 240) -> bool:
    """Mesh.wait_for, tolerating a `meshd status` that times out on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return mesh.wait_for(transport, timeout=deadline - time.monotonic())
        except subprocess.TimeoutExpired:
            continue
    return False


def window(mesh: Mesh, seconds: float, action: str = "") -> tuple[int, int, float]:
    """(MeshNode writes, passes, seconds) over a window, after doing `action` (a mode) at its start."""
    w0, p0, t0 = count(mesh, "wrote MeshNode"), passes(mesh), time.monotonic()
    if action:
        mesh.set_mode(action)
        assert converge(mesh, "vxlan" if action == "Disabled" else "wireguard")
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    return count(mesh, "wrote MeshNode") - w0, passes(mesh) - p0, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--idle", type=float, default=40.0, help="seconds of steady state (resync is 30 s)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-status-") as tmp, Lab() as lab:
        mesh = Mesh(lab, build_cluster(lab, args.nodes), Path(tmp))
        try:
            mesh.start()
            if not converge(mesh, "wireguard"):
                print("the mesh did not converge", file=sys.stderr)
                return 1
            time.sleep(8)  # the first handshakes reach the MeshNodes
            rows = [
                ("steady state", *window(mesh, args.idle)),
                ("toggle to Disabled", *window(mesh, 10, "Disabled")),
                ("toggle to Enabled", *window(mesh, 10, "Enabled")),
            ]
        finally:
            mesh.stop()
    print(f"MeshNode writes, {args.nodes} agents (file datastore, wireguard-go)")
    print(f"{'window':<20} {'seconds':>8} {'writes':>7} {'writes/s':>9} {'passes':>7} {'writes/pass':>12}")
    for name, writes, npasses, secs in rows:
        ratio = writes / npasses if npasses else 0.0
        print(f"{name:<20} {secs:>8.1f} {writes:>7} {writes / secs:>9.2f} {npasses:>7} {ratio:>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
