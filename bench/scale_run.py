"""The measuring half of bench.scale; it runs inside the namespace bench.scale created (do not run it
directly). Everything it starts (fake API server thread, agent, wireguard-go) lives in that namespace and
is stopped here; bench.scale's Lab removes the namespace and anything left in it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.scale_probe import (
    RouteMonitor,
    WatchProbe,
    metric,
    poll_until,
    rss_mb,
    scrape,
    sim_cluster,
    wg_setconf_floor,
)
from tests.fakekube import FakeKube

METRICS = "127.0.0.1:9473"
RESYNC = 5  # seconds: a few no-op passes to time, rarely colliding with a node add


def agent_argv(work: Path, interface: str, kubeconfig: Path) -> list[str]:
    return [
        sys.executable, "-m", "meshd", "--log-format", "json", "run",
        "--node-name", "node0", "--datastore", "kubernetes", "--kubeconfig", str(kubeconfig),
        "--key-file", str(work / "node0.key"), "--interface", interface, "--wireguard", "userspace",
        "--metrics-addr", METRICS, "--run-dir", str(work / "run"), "--resync", str(RESYNC),
    ]  # fmt: skip


def count_lines(*cmd: str) -> int:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if line.strip())


IMPORTS = (
    "import meshd.agent.wiring, meshd.datastore.kubernetes, meshd.datastore.k8s_api, overlay.userspace\n"
    "from kubernetes.aio import client\nclient.CoreV1Api, client.CustomObjectsApi  # imported lazily"
)


def sync_marks(interface: str, want: int, agent: subprocess.Popen[bytes]) -> dict[str, float]:
    """When the WireGuard device appeared, when it held all `want` peers, when all routes were in."""
    marks: dict[str, float] = {}
    peers = ("wg", "show", interface, "peers")
    routes = ("ip", "route", "show", "proto", "109")

    def reached() -> bool:
        now = time.perf_counter()
        if "device" not in marks and Path(f"/sys/class/net/{interface}").exists():
            marks["device"] = now
        if "device" in marks and "peers" not in marks and count_lines(*peers) >= want:
            marks["peers"] = now
        if "peers" in marks and count_lines(*routes) >= want:
            marks["routes"] = now
        return "routes" in marks

    if not poll_until(reached, timeout=300, alive=agent):
        raise SystemExit(f"the agent did not program {want} peers and routes")
    return marks


def idle_import_rss() -> float:
    code = f"{IMPORTS}\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024


def startup_seconds(runs: int = 3) -> float:
    """What starting an interpreter and importing the agent costs before it can do anything."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wg_dump_seconds(interface: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["wg", "show", interface, "dump"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def agent_process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run(args: argparse.Namespace) -> dict[str, float]:
    work, n = Path(args.workdir), args.nodes
    me, sims = sim_cluster(n, extra=args.adds)
    present, later = sims[: n - 1], sims[n - 1 :]
    floor = wg_setconf_floor(args.baseline_interface, present, work)
    res: dict[str, float] = {"setconf_floor_s": floor, "startup_s": startup_seconds()}
    with FakeKube(bookmark_interval=1.0) as kube:
        kubeconfig = kube.write_kubeconfig(work / "kubeconfig")
        for obj in (me, *present):
            kube.put("nodes", obj)
        t0 = time.perf_counter()
        with agent_process(agent_argv(work, args.interface, kubeconfig), work / "agent.log") as agent:
            marks = sync_marks(args.interface, n - 1, agent)
            res["initial_sync_s"] = marks["routes"] - t0
            res["peers_after_device_s"] = marks["peers"] - marks["device"]
            res["peers"] = count_lines("wg", "show", args.interface, "peers")
            adds, floors = [], []
            with RouteMonitor() as monitor, WatchProbe(kube.url) as watch:
                for obj in later:
                    time.sleep(1.5)  # let the previous add's verification pass settle
                    cidr, name = obj["spec"]["podCIDRs"][0], obj["metadata"]["name"]
                    t0 = time.perf_counter()
                    kube.put("nodes", obj)
                    adds.append(monitor.wait_for(cidr, timeout=30) - t0)
                    floors.append(watch.wait_for(name, timeout=30) - t0)
            res["node_add_s"], res["watch_floor_s"] = statistics.median(adds), statistics.median(floors)
            time.sleep(3)
            before, cpu0, patches0 = scrape(METRICS), _cpu_seconds(agent.pid), kube.count("patch")
            time.sleep(3 * RESYNC + 1)
            after, cpu1, patches1 = scrape(METRICS), _cpu_seconds(agent.pid), kube.count("patch")
            passes = metric(after, "meshd_reconcile_duration_seconds_count") - metric(
                before, "meshd_reconcile_duration_seconds_count"
            )
            busy = metric(after, "meshd_reconcile_duration_seconds_sum") - metric(
                before, "meshd_reconcile_duration_seconds_sum"
            )
            res["noop_passes"] = passes
            res["noop_pass_s"] = busy / passes if passes else float("nan")
            res["noop_cpu_s"] = (cpu1 - cpu0) / passes if passes else float("nan")
            res["noop_kernel_writes"] = metric(after, "meshd_drift_repairs_total") - metric(
                before, "meshd_drift_repairs_total"
            )
            res["noop_patches"] = patches1 - patches0
            res["wg_dump_s"] = wg_dump_seconds(args.interface)
            res["rss_mb"] = rss_mb(agent.pid)
            res["idle_rss_mb"] = idle_import_rss()
    return res


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(n: int, r: dict[str, float]) -> None:
    programming = r["initial_sync_s"] - r["startup_s"]
    rows = [
        (f"initial sync, {n - 1} peers", r["initial_sync_s"], "wg setconf floor", r["setconf_floor_s"]),
        ("  less start-up", programming, "wg setconf floor", r["setconf_floor_s"]),
        ("  peers, once the device", r["peers_after_device_s"], "wg setconf floor", r["setconf_floor_s"]),
        ("one node added", r["node_add_s"], "watch delivery", r["watch_floor_s"]),
        ("no-op resync pass", r["noop_pass_s"], "wg show dump", r["wg_dump_s"]),
    ]
    print(f"{'measure':<26} {'meshd':>10} {'baseline':>18} {'':>10} {'ratio':>7}")
    for what, ours, base_name, base in rows:
        print(f"{what:<26} {ours * 1000:>8.1f}ms {base_name:>18} {base * 1000:>8.1f}ms {ours / base:>7.2f}")
    rss, idle = r["rss_mb"], r["idle_rss_mb"]
    print(f"{'agent RSS':<26} {rss:>8.1f}MB {'idle imports':>18} {idle:>8.1f}MB {rss / idle:>7.2f}")
    print(
        f"peers programmed {int(r['peers'])}; no-op passes {int(r['noop_passes'])}: "
        f"{r['noop_cpu_s'] * 1000:.1f} ms CPU each, {int(r['noop_kernel_writes'])} kernel writes, "
        f"{int(r['noop_patches'])} API patches"
    )
    ratios = {
        "sync_ratio": r["initial_sync_s"] / r["setconf_floor_s"],
        "sync_after_start_ratio": programming / r["setconf_floor_s"],
        "peers_ratio": r["peers_after_device_s"] / r["setconf_floor_s"],
        "node_add_ratio": r["node_add_s"] / r["watch_floor_s"],
        "noop_ratio": r["noop_pass_s"] / r["wg_dump_s"],
        "rss_ratio": rss / idle,
    }
    line = {"bench": "scale", "nodes": n, **{k: round(v, 2) for k, v in ratios.items()}}
    line |= {k: round(v, 4) for k, v in r.items()}
    print(json.dumps(line))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--adds", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--interface", required=True)
    ap.add_argument("--baseline-interface", required=True)
    args = ap.parse_args(argv)
    try:
        report(args.nodes, run(args))
    finally:
        for link in (args.interface, args.baseline_interface):  # wireguard-go exits with its link
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
