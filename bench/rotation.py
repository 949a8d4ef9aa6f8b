"""Key rotation: pings lost and extra WireGuard handshakes per rotation, against the handshakes of a quiet
window of the same length measured in the same run (the baseline).

3 nodes (file datastore, wireguard-go), 20 Hz pings both ways on two pairs, `meshd keys rotate` on each node
in turn. Handshakes are counted on the wire: WireGuard handshake initiations (message type 1) seen by a
packet socket in the underlay namespace.

Run as root: .venv/bin/python -m bench.rotation [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, LabNode, build_cluster
from meshd.demo.traffic import PingRun

COUNTER = """
import socket, struct, signal, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.settimeout(0.2)
n, crossed, pending, stop = 0, 0, {}, []
signal.signal(signal.SIGINT, lambda *a: stop.append(1))
while not stop:
    try: f, addr = s.recvfrom(65535)
    except (TimeoutError, OSError): continue
    if addr[2] != socket.PACKET_OUTGOING and f[12:14] == b"\\x08\\x00" and f[23] == 17:
        l4 = 14 + (f[14] & 15) * 4
        msg, now = f[l4 + 8 : l4 + 12], time.monotonic()
        a, b = (f[26:30], f[l4:l4 + 2]), (f[30:34], f[l4 + 2:l4 + 4])
        if msg == b"\\x01\\x00\\x00\\x00":  # initiation: crossed if b's to a is still unanswered
            n += 1
            other = pending.get((b, a))
            crossed += other is not None and now - other[1] < 0.2
            pending[(a, b)] = (f[l4 + 12 : l4 + 16], now)
        elif msg == b"\\x02\\x00\\x00\\x00" and pending.get((b, a), (b"",))[0] == f[l4 + 16 : l4 + 20]:
            del pending[(b, a)]  # the response to b's initiation
print(n, crossed, flush=True)
"""


def count_initiations(lab: Lab, ns: str, seconds: float, during: object = None) -> tuple[int, int]:
    """Handshake initiations seen, and those sent while one in the other direction was unanswered."""
    proc = lab.popen(ns, sys.executable, "-c", COUNTER, stdout=subprocess.PIPE)
    time.sleep(0.5)
    if callable(during):
        during()
    else:
        time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    n, crossed = out.split()[:2]
    return int(n), int(crossed)  # each frame once: as it enters the bridge (not again as it leaves)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2, help="rotations of each node")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp, Lab() as lab:
        nodes = build_cluster(lab, 3)
        mesh = Mesh(lab, nodes, Path(tmp))
        mesh.start(extra=("--wireguard", "userspace"))
        if not mesh.wait_for("wireguard", poll=0.1):
            print("the mesh did not form", file=sys.stderr)
            return 1
        sw, rotations = lab.namespaces[0], args.rounds * len(nodes)
        pairs: list[tuple[LabNode, LabNode]] = [(nodes[0], nodes[1]), (nodes[1], nodes[2])]

        def rotate_all() -> None:
            for _ in range(args.rounds):
                for agent in mesh.agents:
                    res = lab.sh(agent.node.ns, sys.executable, "-m", "meshd", "keys", "rotate",
                                 "--run-dir", str(agent.run_dir), check=False, timeout=150)  # fmt: skip
                    if res.returncode != 0:
                        raise RuntimeError(f"rotation failed: {res.stderr.strip()}")

        time.sleep(3)  # first handshakes settle
        t0 = time.monotonic()
        pings = [PingRun.start(lab, a, b, seconds=300) for x, y in pairs for a, b in ((x, y), (y, x))]
        rotating, crossed = count_initiations(lab, sw, 0, rotate_all)
        window = time.monotonic() - t0
        for p in pings:
            p.proc.send_signal(signal.SIGINT)
        results = [p.finish() for p in pings]
        quiet, _ = count_initiations(lab, sw, window)
        mesh.stop()
    sent, received = sum(s for s, _ in results), sum(r for _, r in results)
    extra = (rotating - quiet) / rotations
    print(
        f"rotations                      {rotations:8d}   in {window:.1f} s ({window / rotations:.1f} s each)"
    )
    print(f"pings sent / lost              {sent:8d} / {sent - received}")
    print(f"handshake initiations          {rotating:8d}   quiet window of the same length: {quiet}")
    print(f"extra handshakes per rotation  {extra:8.1f}   (3 nodes: 2 pairs per rotation, 2 tunnels each)")
    print(f"crossed initiations            {crossed:8d}   (sent while the other end's was unanswered)")
    print(json.dumps({"bench": "rotation", "nodes": 3, "rotations": rotations, "pings_sent": sent,
                      "pings_lost": sent - received, "handshakes_rotating": rotating, "handshakes_quiet": quiet, "crossed_initiations": crossed,
                      "extra_handshakes_per_rotation": round(extra, 2), "seconds_per_rotation": round(window / rotations, 2)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
