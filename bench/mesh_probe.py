"""The fine probe of bench.convergence: every 20 ms, read each node's routes (one netlink socket per node
namespace, opened once); once every node has an owned route to every other node's pod CIDR, confirm with
one ping per ordered pair of pods. The mesh counts as formed at the poll that found the routes, provided
the pings that follow all answer (else the probe goes on)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterator

from pyroute2 import NetNS

from meshd.core.state import RTPROT_MESHD
from meshd.demo.netlab import Lab, LabNode

POLL = 0.02


class MeshProbe:
    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._sockets: dict[str, NetNS] = {}

    def _routes(self, node: LabNode) -> set[ipaddress.IPv4Network]:
        ns = self._sockets.get(node.ns)
        if ns is None:
            ns = self._sockets[node.ns] = NetNS(node.ns, flags=0)
        found = set()
        for r in ns.get_routes(family=socket.AF_INET, proto=RTPROT_MESHD):
            if r.get("type") == 1:  # unicast: not a Required guard (unreachable)
                found.add(ipaddress.IPv4Network(f"{r.get('dst')}/{r.get('dst_len')}"))
        return found

    def routed(self, nodes: list[LabNode]) -> bool:
        """Every node has an owned unicast route to every other node's (IPv4) pod CIDRs."""
        for node in nodes:
            want = {c for other in nodes if other is not node for c in other.pod_cidrs if c.version == 4}
            if not want <= self._routes(node):
                return False
        return True

    def pings(self, nodes: list[LabNode]) -> bool:
        return all(
            self._lab.ping(a.pod_ns, str(b.pod_ips[0]), wait=1) for a in nodes for b in nodes if a is not b
        )

    def wait_formed(self, nodes: list[LabNode], *, since: float, timeout: float = 60) -> float:
        """Seconds from `since` (a perf_counter reading) to the poll that found the whole mesh routed,
        confirmed by the pings that followed."""
        deadline = since + timeout
        while time.perf_counter() < deadline:
            at = time.perf_counter()
            if self.routed(nodes) and self.pings(nodes):
                return at - since
            time.sleep(max(0.0, POLL - (time.perf_counter() - at)))
        raise TimeoutError(f"no full mesh of {len(nodes)} nodes within {timeout} s")

    def close(self) -> None:
        for ns in self._sockets.values():
            with contextlib.suppress(Exception):
                ns.close()
        self._sockets.clear()


@contextlib.contextmanager
def mesh_probe(lab: Lab) -> Iterator[MeshProbe]:
    probe = MeshProbe(lab)
    try:
        yield probe
    finally:
        probe.close()
