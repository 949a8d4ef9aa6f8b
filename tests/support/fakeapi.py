"""The fake API server (tests/fakekube) as a process in a lab namespace, reachable by the lab's agents;
shared by the Kubernetes agent tests and bench.convergence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meshd.demo.netlab import Lab
from meshd.demo.stores import KubeStore

API_IP, API_PORT = "198.18.0.250", 6443
REPO = Path(__file__).resolve().parents[2]


def start_fake_api(lab: Lab, workdir: Path, *, bookmark_interval: float = 1.0) -> KubeStore:
    """The fake API server as a process in the switch namespace (the first one the cluster created)."""
    switch = lab.namespaces[0]
    lab.ip(switch, "addr", "add", f"{API_IP}/24", "dev", "br0")
    kubeconfig = workdir / "kubeconfig"
    proc = lab.popen(
        switch, sys.executable, "-m", "tests.fakekube", "--host", API_IP, "--port", str(API_PORT),
        "--kubeconfig-out", str(kubeconfig), "--bookmark-interval", str(bookmark_interval),
        stdout=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    if url != f"http://{API_IP}:{API_PORT}":
        raise RuntimeError(f"the fake API server did not start: {url!r}")
    return KubeStore(lab, switch, url, kubeconfig)
