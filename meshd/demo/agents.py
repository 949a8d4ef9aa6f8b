"""Real meshd agents as child processes, one per node namespace, on either datastore (stores.py).

Shared by the demo, the integration tests and the benchmarks. Every process is tracked by PID and
stopped by `stop()`/`close()`; the Lab removes the namespaces (and whatever still lives in them).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.cli.status import fetch_status
from meshd.demo.netlab import Lab, LabNode, Proc
from meshd.demo.stores import FileStore, Store, http_in_ns
from meshd.errors import ConfigError


@dataclass
class Agent:
    node: LabNode
    workdir: Path
    store: Store
    proc: Proc | None = None
    extra: tuple[str, ...] = ()

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"{self.node.name}.log"

    @property
    def run_dir(self) -> Path:
        """wireguard-go files and the agent's /status socket (one per agent: the socket is a file)."""
        return self.workdir / "run" / self.node.name

    @property
    def cni_dir(self) -> Path:
        return self.workdir / "cni" / self.node.name

    def argv(self) -> list[str]:
        """The agent's command line as a user types it."""
        return [sys.executable, "-m", "meshd", *self.args()]

    def args(self) -> list[str]:
        """`meshd ARGS` for this agent."""
        n = self.node
        args = [
            "--log-format", "json", "run",
            "--node-name", n.name,
            "--key-file", str(self.workdir / "keys" / f"{n.name}.key"),
            "--interface", n.wg_name,
            "--metrics-addr", "127.0.0.1:9473",
            "--run-dir", str(self.run_dir),
            "--resync", "5",
            "--cni-conf-dir", str(self.cni_dir),
        ]  # fmt: skip
        return [*args, *self.store.agent_args(n), *self.extra]

    def start(self, lab: Lab) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = lab.meshd(self.node.ns, self.args(), self.log_path)

    def command(self, lab: Lab, name: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Another meshd command (e.g. `cleanup`) with this agent's flags, in its namespace."""
        args = self.args()
        at = args.index("run")
        return lab.meshd_run(
            self.node.ns, [*args[:at], name, *args[at + 1 :]], self.log_for(name), timeout=timeout
        )

    def log_for(self, command: str) -> Path:
        """Where another meshd command run for this agent keeps its output."""
        return self.log_path.with_name(f"{self.node.name}-{command}.log")

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 10) -> int | None:
        """Stop this agent process (only it: wireguard-go, detached, keeps running)."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)  # a no-op once it ended (a forked agent's PID is free at once then)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, lab: Lab) -> dict[str, Any] | None:
        """The agent's /status document, read by this process from the agent's unix socket as `meshd status
        --json` does (no Python started per call: seconds each in the test VM); None while it does not
        answer."""
        try:
            return fetch_status(self.run_dir)
        except ConfigError:
            return None

    def http_get(self, lab: Lab, path: str) -> tuple[int, str]:
        """GET a path of the agent's metrics/health endpoint from inside its namespace: (status, body)."""
        return http_in_ns(lab, self.node.ns, "GET", "http://127.0.0.1:9473" + path)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Mesh:
    """A cluster of agents sharing one datastore (default: a file datastore in `workdir/store`)."""

    lab: Lab
    nodes: list[LabNode]
    workdir: Path
    store: Store | None = None
    agents: list[Agent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = FileStore(self.workdir / "store")

    @property
    def datastore(self) -> Store:
        assert self.store is not None
        return self.store

    def start(self, *, extra: tuple[str, ...] = ()) -> None:
        for node in self.nodes:
            self.datastore.register(node)
        for node in self.nodes:
            self._spawn(node, extra)

    def add(self, node: LabNode, *, register: bool = True, extra: tuple[str, ...] = ()) -> Agent:
        """Register a node (unless someone else did) and start its agent."""
        if node not in self.nodes:
            self.nodes.append(node)
        if register:
            self.datastore.register(node)
        return self._spawn(node, extra)

    def _spawn(self, node: LabNode, extra: tuple[str, ...]) -> Agent:
        agent = Agent(node, self.workdir, self.datastore, extra=extra)
        agent.start(self.lab)
        self.agents.append(agent)
        return agent

    def remove(self, node: LabNode) -> None:
        """Stop a node's agent, forget it, and delete its record."""
        for agent in [a for a in self.agents if a.node == node]:
            agent.stop()
            self.agents.remove(agent)
        if node in self.nodes:
            self.nodes.remove(node)
        self.datastore.remove(node.name)

    def set_mode(self, mode: str, *, fallback: str = "VXLAN", generation: int | None = None) -> int:
        return self.datastore.set_mode(mode, fallback=fallback, generation=generation)

    def transports(self) -> dict[str, dict[str, str]] | None:
        """node -> peer -> transport, from every agent's /status; None while any agent does not answer."""
        out: dict[str, dict[str, str]] = {}
        for agent in self.agents:
            doc = agent.status(self.lab)
            if doc is None:
                return None
            out[agent.node.name] = {p["node"]: p["transport"] for p in doc.get("peers", [])}
        return out

    def wait_for(self, transport: str, *, timeout: float = 60, poll: float = 0.2) -> bool:
        """Until every agent reports every other node as a peer over `transport` and pods reach each other."""
        deadline = time.monotonic() + timeout
        names = {a.node.name for a in self.agents}
        while time.monotonic() < deadline:
            t = self.transports()
            if (
                t is not None
                and all(
                    set(peers) == names - {n} and set(peers.values()) == {transport} for n, peers in t.items()
                )
                and all(self.reachable(a, b) for a in self.nodes for b in self.nodes if a is not b)
            ):
                return True
            time.sleep(poll)
        return False

    def reachable(self, a: LabNode, b: LabNode) -> bool:
        return all(self.lab.ping(a.pod_ns, str(ip), wait=1) for ip in b.pod_ips)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
