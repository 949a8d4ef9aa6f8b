"""Instruments for bench.scale: the simulated cluster, the `wg setconf` floor, and probes that timestamp
what a user would see (a route appearing, a watch event arriving, a metric)."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from keys.values import PrivateKey
from meshd.core.codec import encode_node
from meshd.core.model import Endpoint, Node, Transport

Obj = dict[str, Any]
UNDERLAY, PODS = ipaddress.IPv4Address("198.18.0.0"), ipaddress.IPv4Address("198.19.0.0")


def sim_node(i: int, size: int = 64) -> Obj:
    """Node i of the simulated cluster: `size` addresses of 198.19.0.0/16 and an underlay address in
    198.18.0.0/16. Node 0 is ours and carries no annotations (the agent publishes them)."""
    underlay = UNDERLAY + i + 1
    cidr = ipaddress.IPv4Network(f"{PODS + size * i}/{32 - size.bit_length() + 1}")
    if i == 0:
        return encode_node(Node("node0", underlay, (cidr,)))
    node = Node(
        f"sim{i:04d}",
        underlay,
        (cidr,),
        public_key=PrivateKey.generate().public_key(),
        endpoint=Endpoint(underlay, 51820),
        vxlan_mac=f"02:4d:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
    )
    return encode_node(node)


def sim_cluster(n: int, *, extra: int) -> tuple[Obj, list[Obj]]:
    """Our node, and n - 1 + extra simulated ones (the last `extra` are added later). Pod CIDRs are /26
    up to 1024 nodes, /29 up to 8192 (all inside 198.19.0.0/16)."""
    total = n + extra
    if total > 8192:
        raise ValueError("198.19.0.0/16 holds 8192 /29 pod CIDRs")
    size = 64 if total <= 1024 else 8
    return sim_node(0, size), [sim_node(i, size) for i in range(1, total)]


def poll_until(cond: Callable[[], bool], *, timeout: float, alive: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive.poll() is None:
        if cond():
            return True
        time.sleep(0.02)
    return False


class _LineProbe:
    """Timestamps lines as a background thread reads them; `wait_for(text)` returns the first match's time."""

    def __init__(self) -> None:
        self._seen: list[tuple[float, str]] = []
        self._cond = threading.Condition()

    def _record(self, line: str) -> None:
        with self._cond:
            self._seen.append((time.perf_counter(), line))
            self._cond.notify_all()

    def wait_for(self, text: str, *, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self._seen:
                    if text in line:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"never saw {text!r}")
                self._cond.wait(left)


class _Monitor:
    """A kernel monitor command (`ip -o monitor route`, `bridge monitor fdb`, ...) run in this namespace, its
    lines (all but deletions) handed to `_line` by a background thread as they come."""

    _argv: tuple[str, ...]

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.2)  # let it subscribe before anything is measured
        return self

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if not line.startswith("Deleted"):
                self._line(line)

    def _line(self, line: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)

    def __exit__(self, *exc: object) -> None:
        self.close()


class RouteMonitor(_Monitor, _LineProbe):
    """`ip -o monitor route` in this namespace: when a route appears."""

    _argv = ("ip", "-o", "monitor", "route")

    def _line(self, line: str) -> None:
        self._record(line)


class EntryCount(_Monitor):
    """A kernel monitor started before the agent: `reached(n)` is when the n-th distinct entry `key` picks
    out of its lines (None: not one of ours) was announced. Notifications cost the kernel nothing extra;
    polling a dump of thousands of entries every 20 ms took CPU from the agent it measures."""

    def __init__(self, argv: tuple[str, ...], key: Callable[[str], str | None]) -> None:
        self._argv, self._key = argv, key
        self._seen: set[str] = set()
        self._times: list[float] = []

    def _line(self, line: str) -> None:
        key = self._key(line)
        if key is not None and key not in self._seen:
            self._seen.add(key)
            self._times.append(time.perf_counter())

    def reached(self, n: int) -> float | None:
        times = self._times
        return times[n - 1] if len(times) >= n else None


class WatchProbe(_LineProbe):
    """A bare watch on nodes against the API server: when an event reaches a client (the delivery floor)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = urllib.parse.urlsplit(url)

    def __enter__(self) -> WatchProbe:
        listing = json.loads(urllib.request.urlopen(f"{self._url.geturl()}/api/v1/nodes", timeout=30).read())
        rv = listing["metadata"]["resourceVersion"]
        self._conn = http.client.HTTPConnection(self._url.hostname or "", self._url.port, timeout=60)
        self._conn.request("GET", f"/api/v1/nodes?watch=1&resourceVersion={rv}&timeoutSeconds=600")
        self._resp = self._conn.getresponse()
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            while line := self._resp.readline():
                event = json.loads(line)
                if event.get("type") == "ADDED":
                    self._record(event["object"]["metadata"]["name"])

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def scrape(addr: str) -> str:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def metric(text: str, name: str) -> float:
    """Sum of every sample of `name` (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def count_lines(*cmd: str) -> int:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if line.strip())


VXLAN = "meshd-vxlan"  # the agent's VXLAN link (its default name)


def _first_if(line: str, *needles: str) -> str | None:
    """The line's first word (a route's destination, a neighbour's address, an FDB entry's MAC) when the
    line holds every needle."""
    return line.split(maxsplit=1)[0] if all(n in line for n in needles) else None


def entry_monitors() -> dict[str, EntryCount]:
    """What the floor's `ip -batch` and `bridge -batch` put in, announced by the kernel as it goes in."""
    return {
        "routes": EntryCount(("ip", "-o", "monitor", "route"), lambda ln: _first_if(ln, " proto 109")),
        "neighbours": EntryCount(
            ("ip", "-o", "monitor", "neigh"), lambda ln: _first_if(ln, f" dev {VXLAN} ", "PERMANENT")
        ),
        "fdb": EntryCount(("bridge", "monitor", "fdb"), lambda ln: _first_if(ln, f" dev {VXLAN} ", " dst ")),
    }


def sync_marks(
    interface: str, want: int, agent: subprocess.Popen[bytes], entries: dict[str, EntryCount]
) -> dict[str, float]:
    """When the WireGuard device appeared, then when it held all `want` peers and when the kernel had
    announced all routes, neighbour and FDB entries (what the floor's three commands put in). The peers'
    mark is the time `wg show` returned: it waits while wireguard-go applies a `set`, so the time it
    started can precede the state it reports (by up to the whole set); the mark is late by at most one
    `wg show` of every peer (~20 ms at 5000)."""
    marks: dict[str, float] = {}
    peers = ("wg", "show", interface, "peers")

    def reached() -> bool:
        if "device" not in marks and Path(f"/sys/class/net/{interface}").exists():
            marks["device"] = time.perf_counter()
        if "device" in marks and "peers" not in marks and count_lines(*peers) >= want:
            marks["peers"] = time.perf_counter()
        marks.update((what, at) for what, mon in entries.items() if (at := mon.reached(want)) is not None)
        return len(marks) == 2 + len(entries)

    if not poll_until(reached, timeout=600, alive=agent):
        raise SystemExit(f"the agent did not program {want} peers, routes, neighbour and FDB entries")
    return marks
