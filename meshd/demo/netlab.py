"""A lab of uniquely named network namespaces: used by the demo, the benchmarks and the integration tests.

Everything is created inside namespaces the lab made (`ip -n NS ...`); the root namespace is never
changed. `close()` removes every namespace, ends every process living in them (by PID) and the ones the
lab started, and is safe to call twice. Use it as a context manager so it runs on failure too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshd.demo import forked

SLOW = float(os.environ.get("MESHD_LAB_SLOW", "1"))
"""Scales every command timeout: a slow machine (the test VM, emulated) starts processes far slower."""


def forking() -> bool:
    """MESHD_LAB_FORK=1: meshd commands are forks of a warm server (forked.py), not a cold Python each.
    The tests set it (a cold start takes a second here and minutes in the test VM); the demo and the
    benchmarks start meshd cold, as a user does."""
    return os.environ.get("MESHD_LAB_FORK") == "1"


class Proc(Protocol):
    """What the lab needs of a process it started: `subprocess.Popen` or `forked.Forked`."""

    @property
    def pid(self) -> int: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...
    def send_signal(self, sig: int) -> None: ...


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout * SLOW, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass
class Lab:
    """Namespaces and processes owned by one test. `token` makes every name unique on the host."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    def ns(self, role: str) -> str:
        name = f"mt{self.token}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def ifname(self, role: str) -> str:
        """A link name unique on the host (needed for wireguard-go's shared socket directory), <= 15 chars."""
        name = f"w{self.token}{role}"
        assert len(name) <= 15, name
        return name

    def sh(
        self, ns: str, *cmd: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", ns, *args], check=check)

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.sh(ns, "sysctl", "-qw", f"{key}={value}")

    def popen(self, ns: str | None, *cmd: str, **kw: object) -> subprocess.Popen[bytes]:
        argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
        p: subprocess.Popen[bytes] = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def meshd(self, ns: str | None, args: Sequence[str], log: Path) -> Proc:
        """`meshd ARGS` in `ns`, its output appended to `log`: a fork of a warm server when forking(),
        else `python -m meshd` (the same `main()`)."""
        if forking():
            proc: Proc = forked.start(ns, args, log)
            self.procs.append(proc)
            return proc
        with log.open("ab") as out:
            return self.popen(ns, sys.executable, "-m", "meshd", *args, stdout=out, stderr=subprocess.STDOUT)

    def meshd_run(
        self, ns: str | None, args: Sequence[str], log: Path, *, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`meshd ARGS` in `ns` to its end, as `meshd()` starts it (its output also kept in `log`)."""
        if forking():
            code, out, err = forked.run(ns, args, log, timeout=timeout * SLOW)
            return subprocess.CompletedProcess(["meshd", *args], code, out, err)
        cmd = [sys.executable, "-m", "meshd", *args]
        res = (
            self.sh(ns, *cmd, check=False, timeout=timeout) if ns else run(cmd, check=False, timeout=timeout)
        )
        log.write_text(res.stdout + res.stderr)
        return res

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        self.ip(ns_a, "link", "set", if_a, "up")
        self.ip(ns_b, "link", "set", if_b, "up")

    def ping(self, ns: str, dst: str, *, count: int = 1, wait: float = 2) -> bool:
        res = self.sh(ns, "ping", "-n", "-q", "-c", str(count), "-W", str(wait), dst, check=False)
        return res.returncode == 0

    def wait_ping(self, ns: str, dst: str, *, attempts: int = 30) -> bool:
        return any(self.ping(ns, dst, wait=1) for _ in range(attempts))

    def close(self) -> None:
        for p in self.procs:
            _stop(p.pid, p)
        for ns in reversed(self.namespaces):
            with contextlib.suppress(Exception):
                pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                for pid in pids:
                    _stop(int(pid), None)
            with contextlib.suppress(Exception):
                run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        self.procs.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(pid: int, proc: Proc | None) -> None:
    if proc is not None and proc.poll() is not None:
        return  # ended: a fork server's child is reaped at once, so its PID may be another's by now
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _running(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=3)


def _running(pid: int) -> bool:
    """True while `pid` runs. Our own child (e.g. a wireguard-go this process spawned) is reaped once it
    exits; a zombie of another parent counts as gone (its parent reaps it, not us)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[:1] != ["Z"]
    return done == 0


@dataclass(frozen=True)
class LabNode:
    """One simulated node: its namespace, underlay address and pod namespace behind it."""

    index: int
    ns: str
    pod_ns: str
    underlay: ipaddress.IPv4Address | ipaddress.IPv6Address
    pod_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    pod_ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    wg_name: str
    uplink: str = "eth0"

    @property
    def name(self) -> str:
        return f"node{self.index}"


def underlay_address(i: int, *, v6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(f"2001:db8:18::{i + 1:x}" if v6 else f"198.18.0.{i + 1}")


def pod_cidrs_for(
    i: int, *, v4: bool = True, v6: bool = False
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    if v4:
        nets.append(ipaddress.IPv4Network(f"198.19.{i + 1}.0/24"))
    if v6:
        nets.append(ipaddress.IPv6Network(f"2001:db8:19:{i + 1:x}::/64"))
    return tuple(nets)


def build_cluster(
    lab: Lab,
    n: int,
    *,
    underlay_v6: bool = False,
    pod_v4: bool = True,
    pod_v6: bool = False,
    prefix: str = "",
) -> list[LabNode]:
    """n node namespaces on a bridged underlay (a 'switch' namespace), each with a pod namespace.

    Node i: underlay 198.18.0.(i+1)/24 (or 2001:db8:18::(i+1)/64) on `eth0`; pod CIDR 198.19.(i+1).0/24
    (and/or 2001:db8:19:(i+1)::/64); the pod has .2 (::2) behind the node's `pod0` (.1 / ::1), default
    route via the node. Forwarding is on in the node namespaces. Nothing in the root namespace changes.
    """
    sw = lab.ns(f"{prefix}sw")
    lab.ip(sw, "link", "add", "br0", "type", "bridge")
    lab.ip(sw, "link", "set", "br0", "up")
    nodes: list[LabNode] = []
    for i in range(n):
        node = _add_node(lab, sw, i, underlay_v6=underlay_v6, pod_v4=pod_v4, pod_v6=pod_v6, prefix=prefix)
        nodes.append(node)
    return nodes


def _add_node(
    lab: Lab, sw: str, i: int, *, underlay_v6: bool, pod_v4: bool, pod_v6: bool, prefix: str
) -> LabNode:
    ns = lab.ns(f"{prefix}n{i}")
    pod = lab.ns(f"{prefix}p{i}")
    lab.veth(sw, f"n{i}", ns, "eth0")
    lab.ip(sw, "link", "set", f"n{i}", "master", "br0")
    under = underlay_address(i, v6=underlay_v6)
    lab.ip(
        ns,
        "addr",
        "add",
        f"{under}/{64 if underlay_v6 else 24}",
        "dev",
        "eth0",
        *(["nodad"] if underlay_v6 else []),
    )
    lab.sysctl(ns, "net.ipv4.ip_forward", "1")
    lab.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
    lab.veth(ns, "pod0", pod, "eth0")
    cidrs = pod_cidrs_for(i, v4=pod_v4, v6=pod_v6)
    pod_ips = []
    for net in cidrs:
        gw, ip = net.network_address + 1, net.network_address + 2
        nodad = ["nodad"] if net.version == 6 else []
        lab.ip(ns, "addr", "add", f"{gw}/{net.prefixlen}", "dev", "pod0", *nodad)
        lab.ip(pod, "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0", *nodad)
        lab.ip(pod, f"-{net.version}", "route", "add", "default", "via", str(gw))
        pod_ips.append(ip)
    return LabNode(i, ns, pod, under, cidrs, tuple(pod_ips), lab.ifname(f"{prefix}n{i}"))


@contextlib.contextmanager
def lab_cluster(
    n: int, *, underlay_v6: bool = False, pod_v4: bool = True, pod_v6: bool = False
) -> Iterator[tuple[Lab, list[LabNode]]]:
    with Lab() as lab:
        yield lab, build_cluster(lab, n, underlay_v6=underlay_v6, pod_v4=pod_v4, pod_v6=pod_v6)
