"""A 20 Hz ping between two pods that runs until stopped and counts losses by sequence number, so it can
cover a change of unknown length (the VM is slow) and the request in flight when it stops is no loss."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from meshd.demo.netlab import Lab, LabNode


@dataclass
class PingWatch:
    proc: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def start(cls, lab: Lab, src: LabNode, dst: LabNode, out: Path) -> PingWatch:
        with out.open("wb") as sink:
            proc = lab.popen(
                src.pod_ns, "ping", "-n", "-D", "-i", "0.05", "-W", "1", str(dst.pod_ips[0]),
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return cls(proc, out)

    def stop(self) -> tuple[int, list[int]]:
        """(replies, the sequence numbers that never got one, up to the last answered)."""
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=30)
        seen = {int(n) for n in re.findall(rb"icmp_seq=(\d+) ttl=", self.out.read_bytes())}
        return len(seen), sorted(set(range(1, max(seen, default=0) + 1)) - seen)
