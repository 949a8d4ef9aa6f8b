"""Post-quantum PSKs: CPU cost of one exchange, against one X25519 key agreement measured in the same run,
and (with --mesh, as root) pings lost while the PSKs of a 3-node agent mesh change under a 20 Hz ping.

Run: .venv/bin/python -m bench.psk [--rounds 200] [--mesh --seconds 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keys.values import PrivateKey
from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from meshd.fsutil import write_atomic
from meshd.pq.derive import PairKeys, derive
from meshd.pq.exchange import Accepted, initiate, respond

KEYS = PairKeys("node0", "node1", PrivateKey.generate().public_key(), PrivateKey.generate().public_key())


def cpu_ms(step: Callable[[], object], rounds: int) -> float:
    t0 = time.process_time()
    for _ in range(rounds):
        step()
    return (time.process_time() - t0) * 1000 / rounds


def x25519() -> None:
    X25519PrivateKey.generate().exchange(X25519PrivateKey.generate().public_key())


def kem_and_hkdf() -> None:
    key = MLKEM768PrivateKey.generate()
    ek = key.public_key().public_bytes_raw()
    shared, ct = MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
    derive(key.decapsulate(ct), KEYS, epoch=1, ek=ek, ct=ct)
    derive(shared, KEYS, epoch=1, ek=ek, ct=ct)


async def exchanges(rounds: int) -> float:
    """CPU ms per whole exchange (both roles, framing, confirmation) over a socket pair, installs no-op."""

    async def nothing(psk: bytes) -> None:
        return None

    t0 = time.process_time()
    for _ in range(rounds):
        left, right = socket.socketpair()
        (ra, wa), (rb, wb) = (
            await asyncio.open_connection(sock=left),
            await asyncio.open_connection(sock=right),
        )
        await asyncio.gather(
            initiate(ra, wa, KEYS, epoch=1, install=nothing),
            respond(rb, wb, lambda init: Accepted(KEYS, 1, nothing)),
        )
        wa.close()
        wb.close()
    return (time.process_time() - t0) * 1000 / rounds


def mesh_run(seconds: float) -> dict[str, float]:
    """A 3-node agent mesh with a 10 s PSK interval under 20 Hz pings both ways on two pairs."""
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp, Lab() as lab:
        nodes = build_cluster(lab, 3)
        mesh = Mesh(lab, nodes, Path(tmp))
        spec = {"wireguard": {"postQuantum": "Enabled", "pskRotationInterval": "10s"}}
        (Path(tmp) / "store").mkdir()
        obj = {
            "apiVersion": "meshd.io/v1alpha1",
            "kind": "MeshConfig",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        write_atomic(Path(tmp) / "store" / "meshconfig.yaml", yaml.safe_dump(obj).encode())
        mesh.start(extra=("--wireguard", "userspace"))
        try:
            if not mesh.wait_for("wireguard"):
                raise RuntimeError("the mesh did not form")
            pairs = [(nodes[0], nodes[1]), (nodes[1], nodes[0]), (nodes[1], nodes[2]), (nodes[2], nodes[1])]
            procs = [
                lab.popen(s.pod_ns, "ping", "-n", "-q", "-i", "0.05", "-W", "1", "-c", str(int(seconds * 20)),
                          str(d.pod_ips[0]), stdout=-1, stderr=-2)
                for s, d in pairs
            ]  # fmt: skip
            sent = got = 0
            for proc in procs:
                out, _ = proc.communicate(timeout=seconds + 60)
                m = re.search(rb"(\d+) packets transmitted, (\d+) received", out or b"")
                sent, got = sent + int(m.group(1)) if m else sent, got + int(m.group(2)) if m else got
            _, text = mesh.agents[0].http_get(lab, "/metrics")
            done = re.search(r"^meshd_psk_exchanges_total (\S+)$", text, re.M)
            return {
                "pings": sent,
                "lost": sent - got,
                "exchanges_node0": float(done.group(1)) if done else 0.0,
            }
        finally:
            mesh.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--mesh", action="store_true", help="also measure pings lost in a real mesh (root)")
    ap.add_argument("--seconds", type=float, default=150, help="over 120 s: every session rekeys under a PSK")
    args = ap.parse_args(argv)
    base = cpu_ms(x25519, args.rounds)
    kem = cpu_ms(kem_and_hkdf, args.rounds)
    whole = asyncio.run(exchanges(args.rounds))
    print(f"X25519 key agreement (baseline):            {base:.3f} ms CPU")
    print(f"ML-KEM-768 keygen+encaps+decaps + 2x HKDF:  {kem:.3f} ms CPU  ({kem / base:.1f}x)")
    print(f"whole exchange, both agents' share:         {whole:.3f} ms CPU  ({whole / base:.1f}x)")
    result: dict[str, float] = {
        "x25519_ms": base,
        "kem_hkdf_ms": kem,
        "exchange_ms": whole,
        "rounds": args.rounds,
    }
    if args.mesh:
        run = mesh_run(args.seconds)
        print(
            f"pings lost while PSKs changed every 10 s for {args.seconds:.0f} s: {run['lost']:.0f} of {run['pings']:.0f}"
        )
        print(f"PSK exchanges completed by node0 (2 pairs): {run['exchanges_node0']:.0f}")
        result |= run
    print(json.dumps({"bench": "psk", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
