"""Convergence: how long an N-node mesh takes to form, and one more node to join, measured against the time
the file datastore itself takes to deliver a change (its polling floor), in the same run.

Run as root: .venv/bin/python -m bench.convergence [--nodes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshd.core.model import Node
from meshd.datastore.file import FileDatastore
from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp, Lab() as lab:
        floor = asyncio.run(delivery_latency(Path(tmp) / "probe-store"))
        nodes = build_cluster(lab, args.nodes + 1)
        mesh = Mesh(lab, nodes[: args.nodes], Path(tmp) / "mesh")
        t0 = time.perf_counter()
        mesh.start()
        if not mesh.wait_for("wireguard", poll=0.05):
            print("the mesh did not form", file=sys.stderr)
            return 1
        form = time.perf_counter() - t0
        mesh.nodes.append(nodes[-1])
        t0 = time.perf_counter()
        mesh.add(nodes[-1])
        if not mesh.wait_for("wireguard", poll=0.05):
            print("the node did not join", file=sys.stderr)
            return 1
        join = time.perf_counter() - t0
        mesh.stop()
    print(f"datastore delivery (floor)  {floor * 1000:8.0f} ms")
    print(f"{args.nodes}-node mesh formed        {form * 1000:8.0f} ms   {form / floor:6.1f}x the floor")
    print(f"one node joined             {join * 1000:8.0f} ms   {join / floor:6.1f}x the floor")
    print(json.dumps({"bench": "convergence", "nodes": args.nodes, "form_ratio": round(form / floor, 2),
                      "join_ratio": round(join / floor, 2), "floor_ms": round(floor * 1000, 1)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
