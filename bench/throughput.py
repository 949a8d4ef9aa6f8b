"""Throughput: pod-to-pod iperf3 through the meshd-built mesh vs the same topology built by hand, and the
newest wireguard-go (built from its Go module, tests/support/wireguard_go.py) vs Debian's 2022 build.

Five two-node clusters side by side (hand-built WireGuard on Debian's wireguard-go, meshd WireGuard, hand-
built WireGuard on the newest wireguard-go, hand-built VXLAN, meshd VXLAN), measured alternately A B A B.
Prints a table and one JSON line; every figure is a ratio to its baseline (the Debian hand-built pair for
both WireGuard rows).
Run as root: .venv/bin/python -m bench.throughput [--rounds 2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.handbuilt import vxlan_pair, wireguard_pair
from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from meshd.demo.traffic import iperf3
from tests.support.wireguard_go import VERSION, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp, Lab() as lab:
        work = Path(tmp)
        hand_wg = build_cluster(lab, 2, prefix="hw")
        wireguard_pair(lab, hand_wg[0], hand_wg[1], work)
        newest = build_cluster(lab, 2, prefix="hn")
        wireguard_pair(lab, newest[0], newest[1], work, port=51822, binary=str(build()))
        hand_vx = build_cluster(lab, 2, prefix="hv")
        vxlan_pair(lab, hand_vx[0], hand_vx[1])
        mesh_wg = Mesh(lab, build_cluster(lab, 2, prefix="mw"), work / "mw")
        mesh_wg.start()
        mesh_vx = Mesh(lab, build_cluster(lab, 2, prefix="mv"), work / "mv")
        mesh_vx.set_mode("Disabled")
        mesh_vx.start()
        if not (mesh_wg.wait_for("wireguard") and mesh_vx.wait_for("vxlan")):
            print("meshd did not converge", file=sys.stderr)
            return 1
        pairs = {
            "wireguard": ((hand_wg[0], hand_wg[1]), (mesh_wg.nodes[0], mesh_wg.nodes[1])),
            "wireguard-go-newest": ((hand_wg[0], hand_wg[1]), (newest[0], newest[1])),
            "vxlan": ((hand_vx[0], hand_vx[1]), (mesh_vx.nodes[0], mesh_vx.nodes[1])),
        }
        results: dict[str, dict[str, list[float]]] = {}
        for transport, (base, ours) in pairs.items():
            runs: dict[str, list[float]] = {"baseline": [], "meshd": []}
            for _ in range(args.rounds):  # A B A B
                runs["baseline"].append(iperf3(lab, *base, seconds=args.seconds))
                runs["meshd"].append(iperf3(lab, *ours, seconds=args.seconds))
            results[transport] = runs
        mesh_wg.stop()
        mesh_vx.stop()
    report = {}
    print(f"wireguard-go newest: {VERSION}; the row's 'meshd' column is the newest build, hand-built")
    print(f"{'transport':<20} {'baseline Gbit/s':>16} {'meshd Gbit/s':>13} {'ratio':>6}")
    for transport, runs in results.items():
        base_bps, ours_bps = statistics.median(runs["baseline"]), statistics.median(runs["meshd"])
        ratio = ours_bps / base_bps if base_bps else 0.0
        report[f"{transport.replace('-', '_')}_ratio"] = round(ratio, 3)
        report[f"{transport.replace('-', '_')}_gbps"] = round(ours_bps / 1e9, 3)
        print(f"{transport:<20} {base_bps / 1e9:>16.2f} {ours_bps / 1e9:>13.2f} {ratio:>6.2f}")
    print(json.dumps({"bench": "throughput", "rounds": args.rounds, "seconds": args.seconds, **report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
