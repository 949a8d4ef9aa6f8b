"""The demo: N node namespaces on a bridged underlay, one pod namespace each, one real agent per node with
the file datastore; converge, show the mesh, measure, switch encryption off and on, clean up."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from meshd.demo.picture import save_graph
from meshd.demo.report import Figures, render_matrix, render_peers, render_summary
from meshd.demo.traffic import PingRun, iperf3
from meshd.errors import ConfigError

TOOLS = ("ip", "wireguard-go", "iperf3", "ping")


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise ConfigError("meshd demo needs root (it creates network namespaces); run it with sudo")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise ConfigError(
            f"meshd demo needs {', '.join(missing)}: apt-get install wireguard-go iperf3 iproute2 iputils-ping"
        )
    if not os.path.exists("/dev/net/tun"):
        raise ConfigError("meshd demo needs /dev/net/tun for wireguard-go")


def say(msg: str) -> None:
    print(msg, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(nodes: int, *, seconds: float = 3, graph: Path | None = None) -> int:
    check_prerequisites()
    if not 2 <= nodes <= 20:
        raise ConfigError(f"--nodes {nodes}: choose 2 to 20")
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="meshd-demo-"))
    try:
        with Lab() as lab:
            return _demo(
                lab, nodes, workdir, seconds, graph or Path(tempfile.gettempdir()) / "meshd-demo.svg"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        say("cleaned up: namespaces, agents, wireguard-go processes and the temp directory are gone")


def _demo(lab: Lab, n: int, workdir: Path, seconds: float, graph: Path) -> int:
    say(
        f"building {n} node namespaces on a bridged underlay (198.18.0.0/24), each with a pod namespace"
        f" (`ip netns list`: mt{lab.token}-*) ..."
    )
    mesh = Mesh(lab, build_cluster(lab, n), workdir)
    say(f"starting {n} meshd agents (file datastore in {workdir}/store) ...")
    started = time.monotonic()
    mesh.start()
    if not _wait(mesh, "wireguard"):
        return 1
    figures = Figures(converge_seconds=time.monotonic() - started)
    say(render_peers(mesh))
    say(render_matrix(mesh))
    say("")
    figures.wireguard_bps = _measure(mesh, "WireGuard", seconds)
    figures.loss_off = _toggle(mesh, "to Disabled (VXLAN)", "Disabled", "vxlan", generation=2)
    if figures.loss_off is None:
        return 1
    say(render_peers(mesh))
    figures.vxlan_bps = _measure(mesh, "VXLAN", seconds)
    figures.loss_on = _toggle(mesh, "back to Enabled (WireGuard)", "Enabled", "wireguard", generation=3)
    if figures.loss_on is None:
        return 1
    say(render_summary(figures))
    save_graph(workdir / "store", graph, {node.name for node in mesh.nodes})
    mesh.stop()
    return 0


def _wait(mesh: Mesh, transport: str) -> bool:
    if mesh.wait_for(transport, timeout=90):
        return True
    say(f"the mesh did not converge to {transport}; last agent log lines:")
    for agent in mesh.agents:
        say(f"--- {agent.node.name}\n{agent.log_tail()}")
    return False


def _measure(mesh: Mesh, over: str, seconds: float) -> float:
    a, b = mesh.nodes[0], mesh.nodes[1]
    say(f"measuring iperf3 {a.name}-pod -> {b.name}-pod over {over} ({seconds:g}s) ...")
    return iperf3(mesh.lab, a, b, seconds=seconds)


def _toggle(mesh: Mesh, switch: str, mode: str, transport: str, *, generation: int) -> tuple[int, int] | None:
    """Switch the MeshConfig (`switch` says how) while a ping runs: (sent, received), None if no convergence."""
    say(f"\nswitching MeshConfig {switch} while a 20 Hz ping runs ...")
    ping = PingRun.start(mesh.lab, mesh.nodes[0], mesh.nodes[1], seconds=6)
    time.sleep(1)
    mesh.set_mode(mode, generation=generation)
    ok = _wait(mesh, transport)
    sent, received = ping.finish()
    return (sent, received) if ok else None


def main(nodes: int, *, graph: str | None = None) -> int:
    try:
        return run_demo(nodes, graph=Path(graph) if graph else None)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
