"""`meshd demo`, the README's first command, end to end as a user runs it: it completes, prints the
throughput of both transports and the toggle losses, and leaves the machine as it found it (namespaces,
wireguard-go processes and sockets, and the root namespace's links, addresses, routes and rules)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns


def root_state() -> dict[str, str]:
    def show(*args: str) -> str:
        out = subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
        return re.sub(r" (valid_lft|preferred_lft|expires) \S+", "", out)  # lifetimes count down

    return {
        "links": show("-o", "link", "show"),
        "addresses": show("-o", "addr", "show"),
        "routes": show("route", "show", "table", "all") + show("-6", "route", "show", "table", "all"),
        "rules": show("rule", "show") + show("-6", "rule", "show"),
    }


def live_wireguard_go(token: str) -> set[int]:
    """wireguard-go processes serving a link named with `token` that still run (a zombie awaiting its
    reaper has already exited)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name, state = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()[0]
        if name == "wireguard-go" and state != "Z" and any(token.encode() in a for a in argv):
            pids.add(int(stat.parent.name))
    return pids


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def sockets() -> set[str]:
    return {p.name for p in Path("/var/run/wireguard").glob("*.sock")}


def test_the_demo_runs_end_to_end_and_leaves_nothing_behind(tmp_path: Path) -> None:
    before = root_state()
    svg = tmp_path / "mesh.svg"
    res = subprocess.run(
        [sys.executable, "-m", "meshd", "demo", "--nodes", "2", "--graph", str(svg)],
        env={**os.environ, "MESHD_LAB_FORK": "0"},  # the demo as a user runs it: agents started cold
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    wg = re.search(r"iperf3 pod->pod over WireGuard\s+([\d.]+) Gbit/s", out)
    vx = re.search(r"iperf3 pod->pod over VXLAN\s+([\d.]+) Gbit/s", out)
    assert wg and vx and float(wg.group(1)) > 0 and float(vx.group(1)) > 0, out[-2000:]
    assert re.search(r"Enabled -> Disabled\s+\d+ of \d+ lost", out)
    assert re.search(r"Disabled -> Enabled\s+\d+ of \d+ lost", out)
    assert "ok" in out.split("pod-to-pod reachability", 1)[1].split("measuring", 1)[0]
    assert f"saved a picture of the mesh (meshd graph) to {svg}" in out
    texts = {"".join(e.itertext()).strip() for e in ET.parse(svg).iter() if e.tag.endswith("text")}
    assert {"node0", "node1", "WireGuard"} <= texts, texts
    # Other runs may come and go on a shared machine: nothing of the demo's may remain (its names carry
    # its lab's token), and the root namespace is as it was.
    assert root_state() == before
    ours = re.search(r"`ip netns list`: mt(\w+)-\*", out)
    assert ours, out[:2000]
    token = ours.group(1)
    assert not {n for n in namespaces() if n.startswith(f"mt{token}-")}, "a namespace of the demo remains"
    assert not live_wireguard_go(f"w{token}"), "a wireguard-go of the demo still runs"
    assert not {s for s in sockets() if s.startswith(f"w{token}")}, "a UAPI socket of the demo remains"
