"""What key-rotation tests look at on a lab mesh: published keys, device keys, key files, pings, routes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshd.core.state import DeviceNames
from meshd.demo.agents import Agent, Mesh
from meshd.demo.netlab import Lab, LabNode
from meshd.demo.stores import FileStore, meshconfig_object
from meshd.fsutil import write_atomic
from tests.support.observe import eventually, owned_routes, wg_show
from tests.support.pinging import PingWatch
from tests.support.sniff import Sniffer, Tally

ROTATION = "meshd.io/key-rotation"


def set_rotation_interval(store: FileStore, interval: str, **wireguard: str) -> None:
    """A new MeshConfig generation with `keyRotationInterval` and the other `spec.wireguard` fields given."""
    store.generation += 1
    obj = meshconfig_object("Enabled", "VXLAN", store.generation)
    obj["spec"]["wireguard"] = {"keyRotationInterval": interval, **wireguard}
    write_atomic(store.root / "meshconfig.yaml", yaml.safe_dump(obj).encode())


def node_annotations(store: FileStore, name: str) -> dict[str, str]:
    doc = store.node(name) or {}
    ann: dict[str, str] = doc.get("metadata", {}).get("annotations") or {}
    return ann


def published_key(store: FileStore, name: str) -> str | None:
    return node_annotations(store, name).get("meshd.io/public-key")


def file_key(lab: Lab, agent: Agent) -> str:
    key_file = agent.workdir / "keys" / f"{agent.node.name}.key"
    res = subprocess.run(["wg", "pubkey"], input=key_file.read_bytes(), capture_output=True, check=True)
    return res.stdout.decode().strip()


def keys_agree(lab: Lab, mesh: Mesh, store: FileStore) -> bool:
    """Published key == device key == key file for every node, no rotation left on disk or in records."""
    for agent in mesh.agents:
        name = agent.node.name
        device = wg_show(lab, agent.node, "public-key")
        keys_dir = agent.workdir / "keys"
        if not (published_key(store, name) == device == file_key(lab, agent)):
            return False
        if list(keys_dir.glob(f"{name}.key.next*")) or ROTATION in node_annotations(store, name):
            return False
    return True


def peers_hold(lab: Lab, mesh: Mesh, store: FileStore) -> bool:
    """Every node's WireGuard device holds every other node's published key."""
    for agent in mesh.agents:
        peers = set(lab.sh(agent.node.ns, "wg", "show", agent.node.wg_name, "peers").stdout.split())
        others = {published_key(store, a.node.name) for a in mesh.agents if a is not agent}
        if not others <= peers:
            return False
    return True


def rotate_now(lab: Lab, agent: Agent, *, timeout: float = 130) -> subprocess.CompletedProcess[str]:
    args = ["keys", "rotate", "--run-dir", str(agent.run_dir)]
    return lab.meshd_run(agent.node.ns, args, agent.log_for("rotate"), timeout=timeout)


@dataclass
class Pings:
    """20 Hz pings both ways on the given pairs, until `stop()`."""

    watches: dict[str, PingWatch] = field(default_factory=dict)

    @classmethod
    def start(cls, lab: Lab, pairs: list[tuple[LabNode, LabNode]], out: Path) -> Pings:
        pings = cls()
        for a, b in pairs:
            for src, dst in ((a, b), (b, a)):
                label = f"{src.name}->{dst.name}"
                pings.watches[label] = PingWatch.start(lab, src, dst, out / f"ping-{label}.txt")
        return pings

    def stop(self) -> dict[str, tuple[int, list[int]]]:
        return {label: w.stop() for label, w in self.watches.items()}


@dataclass
class KeyWatch:
    """Polls the published keys and each node's owned routes in a thread: every key seen, and any moment a
    pair was routed over something other than WireGuard (the main link or the rotation helper)."""

    lab: Lab
    mesh: Mesh
    store: FileStore
    keys: dict[str, list[str]] = field(default_factory=dict)
    off_wireguard: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> KeyWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for agent in self.mesh.agents:
                name = agent.node.name
                key = published_key(self.store, name)
                seen = self.keys.setdefault(name, [])
                if key and (not seen or seen[-1] != key):
                    seen.append(key)
                self._check_routes(agent.node)
            time.sleep(0.3)

    def _check_routes(self, node: LabNode) -> None:
        wg = node.wg_name
        for line in owned_routes(self.lab, node).splitlines():
            dev = line.split(" dev ")[1].split()[0] if " dev " in line else ""
            if dev not in (wg, DeviceNames(wireguard=wg).rotation_helper):
                self.off_wireguard.append(f"{node.name}: {line}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def status_transports(mesh: Mesh) -> set[str]:
    t = mesh.transports() or {}
    return {tr for peers in t.values() for tr in peers.values()}


def log_text(mesh: Mesh) -> str:
    return "".join(a.log_path.read_text(errors="replace") for a in mesh.agents)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def settle(lab: Lab, mesh: Mesh, store: FileStore, *, timeout: float) -> bool:
    """Rotations over: every published key is on its device and in its key file, and every peer holds it."""
    return eventually(lambda: keys_agree(lab, mesh, store) and peers_hold(lab, mesh, store), timeout=timeout)


def stop_watching(
    watch: KeyWatch, pings: Pings, sniff: Sniffer
) -> tuple[dict[str, tuple[int, list[int]]], Tally]:
    """A moment for replies in flight, then the key watch, the pings and the capture stop; prints the keys
    seen and the capture. Returns the pings (`Pings.stop`) and the capture's tally."""
    time.sleep(2)
    watch.stop()
    result, tally = pings.stop(), sniff.take()
    print(f"\nkeys seen: { {n: len(k) for n, k in watch.keys.items()} }; capture: {tally}")
    return result, tally
