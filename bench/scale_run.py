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

from bench.scale_floor import measure_floor
from bench.scale_probe import (
    Obj,
    RouteMonitor,
    WatchProbe,
    count_lines,
    entry_monitors,
    metric,
    rss_mb,
    scrape,
    sim_cluster,
    sync_marks,
)
from tests.fakekube import FakeKube

METRICS = "127.0.0.1:9473"
BURST, BURSTS = 10, 3  # nodes added back to back, and how many such bursts (each on an idle agent)
IDLE_WINDOW = 30.0  # seconds of nothing changing; the agent's default resync (30 s) falls in it once


def agent_argv(work: Path, interface: str, kubeconfig: Path) -> list[str]:
    """The agent's command line; with MESHD_BENCH_PROFILE=FILE it runs under cProfile, which writes FILE
    when the agent stops (for finding where a pass spends its time, not for the figures)."""
    profile = os.environ.get("MESHD_BENCH_PROFILE")
    return [
        sys.executable, *(("-m", "cProfile", "-o", profile) if profile else ()), "-m", "meshd", "--log-format", "json", "run",
        "--node-name", "node0", "--datastore", "kubernetes", "--kubeconfig", str(kubeconfig),
        "--key-file", str(work / "node0.key"), "--interface", interface, "--wireguard", "userspace",
        "--metrics-addr", METRICS, "--run-dir", str(work / "run"),
    ]  # fmt: skip


IMPORTS = (
    "from meshd.datastore.bare import bare_packages; bare_packages('pyroute2')\n"  # as `meshd run` does
    "import meshd.cli.main, meshd.agent.wiring, meshd.datastore.kubernetes, overlay.userspace, vxlan.links"
)


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
    me, sims = sim_cluster(n, extra=BURST * BURSTS)
    present, later = sims[: n - 1], sims[n - 1 :]
    floor = measure_floor(args.baseline_interface, args.baseline_vxlan, "eth0", present, work)
    res: dict[str, float] = {
        "setconf_floor_s": floor.setconf_s,
        "ip_batch_floor_s": floor.ip_batch_s,
        "bridge_batch_floor_s": floor.bridge_batch_s,
        "floor_s": floor.total_s,
        "startup_s": startup_seconds(),
    }
    with FakeKube(bookmark_interval=60.0) as kube:  # bookmarks about once a minute, like kube-apiserver
        kubeconfig = kube.write_kubeconfig(work / "kubeconfig")
        for obj in (me, *present):
            kube.put("nodes", obj)
        entries = entry_monitors()
        with contextlib.ExitStack() as stack:
            for mon in entries.values():
                stack.enter_context(mon)
            t0 = time.perf_counter()
            argv = agent_argv(work, args.interface, kubeconfig)
            agent = stack.enter_context(agent_process(argv, work / "agent.log"))
            marks = {what: at - t0 for what, at in sync_marks(args.interface, n - 1, agent, entries).items()}
            for mon in entries.values():
                mon.close()  # not needed beyond the initial sync
            res |= {"initial_sync_s": max(marks.values()), "device_s": marks["device"]}
            res["peers_after_device_s"] = marks["peers"] - marks["device"]
            res["peers"] = count_lines("wg", "show", args.interface, "peers")
            res |= burst(kube, later) | idle(kube, agent.pid)
            res["wg_dump_s"] = wg_dump_seconds(args.interface)
            res["rss_mb"], res["idle_rss_mb"] = rss_mb(agent.pid), idle_import_rss()
    return res


def settle(timeout: float = 600) -> None:
    """Until the agent is idle: no pass has ended for twice the last pass's time (3 s at least, 20 s at
    most: resyncs come every 30 s), so that the passes after the initial sync (its verifying pass, seconds
    long at 5000 nodes) are over."""
    deadline = time.monotonic() + timeout
    seen, total, last, quiet_since = -1.0, 0.0, 0.0, time.monotonic()
    while time.monotonic() < deadline:
        try:
            text = scrape(METRICS)
        except OSError:  # a long pass holds the agent's loop (seconds at 5000 nodes): busy, not idle
            seen, quiet_since = -1.0, time.monotonic()
            continue
        count = metric(text, "meshd_reconcile_duration_seconds_count")
        busy = metric(text, "meshd_reconcile_duration_seconds_sum")
        if count != seen:
            if seen >= 0:
                last = (busy - total) / (count - seen)
            seen, total, quiet_since = count, busy, time.monotonic()
        elif time.monotonic() - quiet_since > min(20.0, max(3.0, 2 * last)):
            return
        time.sleep(0.2)
    raise SystemExit("the agent never went idle")


def burst(kube: FakeKube, nodes: list[Obj]) -> dict[str, float]:
    """BURSTS rounds, each on an idle agent, of BURST nodes written back to back: per node, API write until
    its route is in the kernel (the agent writes a node's route after its peer), and until a bare watch
    client saw it (the delivery floor)."""
    adds: list[float] = []
    floors: list[float] = []
    for start in range(0, len(nodes), BURST):
        settle()
        with RouteMonitor() as monitor, WatchProbe(kube.url) as watch:
            written = []
            for obj in nodes[start : start + BURST]:
                written.append((obj, time.perf_counter()))
                kube.put("nodes", obj)
            adds += [monitor.wait_for(f"{o['spec']['podCIDRs'][0]} ", timeout=300) - t for o, t in written]
            floors += [watch.wait_for(o["metadata"]["name"], timeout=300) - t for o, t in written]
    cuts = statistics.quantiles(adds, n=100, method="inclusive")
    return {
        "add_p50_s": statistics.median(adds),
        "add_p99_s": cuts[98],
        "add_max_s": max(adds),
        "watch_floor_s": statistics.median(floors),
    }


def idle(kube: FakeKube, pid: int) -> dict[str, float]:
    """IDLE_WINDOW seconds in which nothing changes (one resync falls in it): CPU, passes, writes; then the
    CPU of one /metrics scrape (a Prometheus server asks every 15-60 s), which is counted apart."""
    settle()
    before, cpu0, patches0 = scrape(METRICS), _cpu_seconds(pid), kube.count("patch")
    time.sleep(IDLE_WINDOW)
    cpu1 = _cpu_seconds(pid)
    after, cpu2, patches1 = scrape(METRICS), _cpu_seconds(pid), kube.count("patch")

    def delta(name: str) -> float:
        return metric(after, name) - metric(before, name)

    passes = delta("meshd_reconcile_duration_seconds_count")
    return {
        "idle_cpu_s": cpu1 - cpu0,
        "scrape_cpu_s": cpu2 - cpu1,
        "idle_passes": passes,
        "noop_pass_s": delta("meshd_reconcile_duration_seconds_sum") / passes if passes else float("nan"),
        "idle_kernel_writes": delta("meshd_drift_repairs_total"),
        "idle_patches": patches1 - patches0,
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in ns steps (schedstat; /proc/PID/stat counts 10 ms ticks)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def goals(n: int, r: dict[str, float]) -> list[tuple[str, str, str, str, bool]]:
    """(measure, meshd, floor, goal, met) rows: the issue's table. Programming is what the agent does that
    the floor's three commands do: from its first device's appearance to the last peer, route, neighbour
    and FDB entry (it also creates both links and starts wireguard-go, which the floor does untimed).
    Before it come start-up (an interpreter importing the agent) and the datastore's list, the decode and
    the plan, which the floor does not do: printed apart."""
    programming, floor = r["initial_sync_s"] - r["device_s"], r["floor_s"]
    rss_goal = 100.0 if n <= 1000 else 200.0
    return [
        (f"initial sync, start to done ({n - 1} peers)", ms(r["initial_sync_s"]), ms(floor),
         "<= floor + 1 s", r["initial_sync_s"] <= floor + 1),
        ("  programming: first device to done", f"{ms(programming)} ({programming / floor:.1f}x)", ms(floor),
         "<= 1.5x floor", programming <= 1.5 * floor),
        (f"  before it: start-up {ms(r['startup_s'])}, then list, decode, plan",
         ms(r["device_s"] - r["startup_s"]), "", "", True),
        ("  peers, from the device's appearance", ms(r["peers_after_device_s"]), f"setconf {ms(r['setconf_floor_s'])}",
         "", True),
        (f"node add, {BURSTS} bursts of {BURST}: p50", ms(r["add_p50_s"]), f"watch {ms(r['watch_floor_s'])}",
         "< 50 ms", r["add_p50_s"] < 0.05),
        ("  p99 / max", f"{ms(r['add_p99_s'])} / {ms(r['add_max_s'])}", "", "", True),
        (f"idle CPU per {IDLE_WINDOW:.0f} s ({r['idle_passes']:.0f} passes)", f"{r['idle_cpu_s']:.2f} s", "",
         "<= 0.1 s", r["idle_cpu_s"] <= 0.1),
        ("  one no-op pass", ms(r["noop_pass_s"]), f"wg show dump {ms(r['wg_dump_s'])}", "", True),
        ("  one /metrics scrape (CPU)", ms(r["scrape_cpu_s"]), "", "", True),
        ("agent RSS", f"{r['rss_mb']:.0f} MB", f"imports {r['idle_rss_mb']:.0f} MB", f"< {rss_goal:.0f} MB",
         r["rss_mb"] < rss_goal),
    ]  # fmt: skip


def report(n: int, r: dict[str, float]) -> None:
    print(f"floor: wg setconf {r['setconf_floor_s'] * 1000:.0f} ms + ip -batch {r['ip_batch_floor_s'] * 1000:.0f} ms"
          f" + bridge -batch {r['bridge_batch_floor_s'] * 1000:.0f} ms")  # fmt: skip
    print("| measure | meshd | floor | goal | met |\n| --- | --- | --- | --- | --- |")
    for what, ours, floor, goal, met in goals(n, r):
        print(f"| {what} | {ours} | {floor} | {goal} | {('yes' if met else 'NO') if goal else ''} |")
    print(f"idle window: {int(r['idle_kernel_writes'])} kernel writes, {int(r['idle_patches'])} API patches")
    print(json.dumps({"bench": "scale", "nodes": n, **{k: round(v, 4) for k, v in r.items()}}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--interface", required=True)
    ap.add_argument("--baseline-interface", required=True)
    ap.add_argument("--baseline-vxlan", required=True)
    args = ap.parse_args(argv)
    try:
        report(args.nodes, run(args))
    finally:
        for link in (
            args.interface,
            args.baseline_interface,
            args.baseline_vxlan,
        ):  # wireguard-go exits with its link
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
