"""Traffic between pod namespaces: iperf3 throughput and a 20 Hz ping that counts losses."""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from meshd.demo.netlab import Lab, LabNode


def iperf3(lab: Lab, src: LabNode, dst: LabNode, *, seconds: float = 3, family: int = 4) -> float:
    """Bits per second received, pod of `src` to pod of `dst` (one TCP stream)."""
    ip = next(str(a) for a in dst.pod_ips if a.version == family)
    server = lab.popen(
        dst.pod_ns, "iperf3", "-s", "-B", ip, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    doc: Any = None
    try:
        detail = ""
        for _ in range(50):  # the server needs a moment to listen
            res = lab.sh(
                src.pod_ns, "iperf3", "-c", ip, "-t", str(seconds), "-J", check=False, timeout=seconds + 30
            )
            try:
                doc = json.loads(res.stdout)
                return float(doc["end"]["sum_received"]["bits_per_second"])
            except (ValueError, KeyError, TypeError):
                detail = (
                    str(doc.get("error")) if isinstance(doc, dict) else res.stdout[-300:] + res.stderr[-300:]
                )
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 from {src.name} to {dst.name} failed: {detail}")
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=5)


@dataclass
class PingRun:
    """A background 20 Hz ping between two pods. `finish()` returns (sent, received)."""

    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, lab: Lab, src: LabNode, dst: LabNode, *, seconds: float) -> PingRun:
        count = int(seconds * 20)
        ip = str(dst.pod_ips[0])
        proc = lab.popen(
            src.pod_ns, "ping", "-n", "-q", "-i", "0.05", "-W", "1", "-c", str(count), ip,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return cls(proc)

    def finish(self, *, timeout: float = 120) -> tuple[int, int]:
        out, _ = self.proc.communicate(timeout=timeout)
        m = re.search(rb"(\d+) packets transmitted, (\d+) received", out or b"")
        if not m:
            raise RuntimeError(f"cannot read ping output: {out[-200:]!r}")
        return int(m.group(1)), int(m.group(2))
