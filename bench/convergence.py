"""Convergence over both datastores: real agents (one per node namespace, real wireguard-go) started at once
until the full mesh is formed, then a 4th node joining it once its agents finished starting. A fine probe (bench/mesh_probe.py) reads every
node's routes every 20 ms and confirms with one ping per pair. The file datastore's own delivery time (one
record written by one datastore until another one has it) is measured in the same run as its floor.

| measure | goal, file datastore | goal, Kubernetes (fake API server in the lab) |
| 3 agents started at once to full mesh | 0.5 s | 1.0 s |
| a 4th node joins | 0.3 s | 0.5 s |

Run as root: .venv/bin/python -m bench.convergence [--nodes 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.compiled import compile_packages
from bench.mesh_probe import mesh_probe
from meshd.core.model import Node
from meshd.datastore.file import FileDatastore
from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from tests.support.fakeapi import start_fake_api

GOALS = {"file": (0.5, 0.3), "kubernetes": (1.0, 0.5)}


async def delivery_latency(store: Path, *, samples: int = 7) -> float:
    """Median seconds from a record being written by one datastore to another one noticing it."""
    watcher = FileDatastore(store)
    await watcher.start()
    await watcher.wait_changed()
    times = []
    try:
        for i in range(samples):
            node = Node(
                f"probe{i}", ipaddress.ip_address("198.18.1.1"), (ipaddress.ip_network(f"198.19.20{i}.0/24"),)
            )
            writer = FileDatastore(store, register=node)
            t0 = time.perf_counter()
            await writer.start()
            await writer.close()
            while not any(r.name == node.name for r in watcher.snapshot().nodes):
                await asyncio.wait_for(watcher.wait_changed(), 10)
            times.append(time.perf_counter() - t0)
    finally:
        await watcher.close()
    return statistics.median(times)


def one_round(kind: str, nodes: int, work: Path) -> tuple[float, float]:
    """(seconds to form the mesh of `nodes`, seconds for one more node to join), in a fresh lab."""
    work.mkdir(parents=True)
    with Lab() as lab:
        cluster = build_cluster(lab, nodes + 1)
        store = start_fake_api(lab, work, bookmark_interval=60.0) if kind == "kubernetes" else None
        mesh = Mesh(lab, cluster[:nodes], work / "mesh", store)
        try:
            with mesh_probe(lab) as probe:
                t0 = time.perf_counter()
                mesh.start()
                form = probe.wait_formed(cluster[:nodes], since=t0)
                settled(mesh)
                t0 = time.perf_counter()
                mesh.add(cluster[-1])
                join = probe.wait_formed(cluster, since=t0)
        finally:
            mesh.stop()
    return form, join


def settled(mesh: Mesh, timeout: float = 30.0) -> None:
    """Until every agent finished starting (its endpoints serve: its /status socket is there), so that the
    next node joins a running mesh, as in a cluster, not one whose agents are still starting."""
    deadline = time.monotonic() + timeout
    while not all((agent.run_dir / "status.sock").exists() for agent in mesh.agents):
        if time.monotonic() > deadline:
            raise SystemExit("the mesh's agents did not finish starting")
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="fresh labs per datastore; the median is shown")
    args = ap.parse_args(argv)
    results: dict[str, float] = {}
    compile_packages()
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp:
        results["file_delivery_s"] = asyncio.run(delivery_latency(Path(tmp) / "probe-store"))
        for kind in GOALS:
            rounds = [one_round(kind, args.nodes, Path(tmp) / f"{kind}{i}") for i in range(args.rounds)]
            results[f"{kind}_form_s"] = statistics.median(r[0] for r in rounds)
            results[f"{kind}_join_s"] = statistics.median(r[1] for r in rounds)
    print(f"file datastore delivery (floor): {results['file_delivery_s'] * 1000:.1f} ms")
    print("| measure | file | goal | Kubernetes | goal |\n| --- | --- | --- | --- | --- |")
    for i, what in enumerate((f"{args.nodes} agents started at once to full mesh", "one more node joins")):
        key = ("form", "join")[i]
        cells = []
        for kind, goal in GOALS.items():
            got = results[f"{kind}_{key}_s"]
            cells += [
                f"{got * 1000:.0f} ms",
                f"{goal[i] * 1000:.0f} ms {'met' if got <= goal[i] else 'NOT met'}",
            ]
        print(f"| {what} | {' | '.join(cells)} |")
    print(json.dumps({"bench": "convergence", "nodes": args.nodes, "rounds": args.rounds,
                      **{k: round(v, 4) for k, v in results.items()}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
