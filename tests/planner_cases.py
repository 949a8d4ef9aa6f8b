"""Shared helpers for the table-driven planner tests (test_planner.py, test_planner_conflicts.py).

`node(i)` is node-<letter i>: underlay 198.18.0.i, pods 198.19.i.0/24, key i, MAC 02:00:00:00:00:i.
A `Case` lists the remote records, the local node (node-a unless `me` says otherwise) and what the plan
must hold: each pair's transport, the routes, the WireGuard peers, the nodes with FDB entries, problems.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from keys.values import PublicKey
from meshd.core.model import Endpoint, IPAddress, LocalNode, MeshConfig, Node, NodeRecord, Snapshot, Transport
from meshd.core.planner import plan
from meshd.core.state import DesiredState

WG, VX, IPIP, NONE = Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP, Transport.NONE
ALL = frozenset({WG, VX})


def key(i: int) -> PublicKey:
    return PublicKey(bytes([i]) * 32)


def node(
    i: int,
    *,
    caps: Iterable[Transport] = ALL,
    with_key: bool = True,
    cidrs: tuple[str, ...] | None = None,
    labels: dict[str, str] | None = None,
    underlay: str | None = None,
    key_of: int | None = None,
) -> Node:
    """node-<letter i>: underlay 198.18.0.i, pods 198.19.i.0/24, key i, MAC 02:00:00:00:00:i."""
    name = f"node-{'abcdefgh'[i - 1]}"
    under = ipaddress.ip_address(underlay or f"198.18.0.{i}")
    return Node(
        name=name,
        underlay_ip=under,
        pod_cidrs=tuple(ipaddress.ip_network(c) for c in (cidrs or (f"198.19.{i}.0/24",))),
        labels=tuple(sorted((labels or {}).items())),
        public_key=key(key_of or i) if with_key else None,
        endpoint=Endpoint(under, 51820),
        vxlan_mac=f"02:00:00:00:00:{i:02x}",
        capabilities=frozenset(caps),
    )


def local_of(n: Node, **kw: object) -> LocalNode:
    return LocalNode(n, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    remotes: tuple[NodeRecord, ...]
    transports: dict[str, Transport]
    routes: dict[str, str]  # pod CIDR -> device
    peers: set[str]  # nodes with a WireGuard peer (in use or standby)
    fallback_nodes: set[str]  # nodes with FDB entries (in use or standby)
    config: MeshConfig = field(default_factory=MeshConfig)
    me: Node = field(default_factory=lambda: node(1))
    local: dict[str, object] = field(default_factory=dict)
    problems: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


def desired_for(case: Case) -> DesiredState:
    return plan(Snapshot.of(case.remotes, case.config), local_of(case.me, **case.local))


def check(case: Case) -> None:
    d = desired_for(case)
    assert {p.node: p.transport for p in d.pairs} == case.transports
    assert {str(r.dst): r.dev for r in d.routes} == case.routes
    assert {p.node for p in d.peers} == case.peers
    by_mac = {n.vxlan_mac: n.name for n in case.remotes if isinstance(n, Node)}
    assert {by_mac[e.mac] for e in d.fdb} == case.fallback_nodes
    assert {(p.kind, p.nodes) for p in d.problems} == case.problems
    assert all(p.reason for p in d.pairs)


def reason(case: Case, peer: str) -> str:
    return next(p.reason for p in desired_for(case).pairs if p.node == peer)


def outer(n: Node) -> set[IPAddress]:
    """The addresses the overlay's outer packets to `n` go to: its underlay address and endpoint."""
    return {n.underlay_ip} | ({n.endpoint.host} if n.endpoint else set())


def clash(x: Node, y: Node) -> bool:
    """Pod CIDRs overlap, or a pod CIDR of one holds an outer address of the other (checked naively)."""
    if any(a.version == b.version and a.overlaps(b) for a in x.pod_cidrs for b in y.pod_cidrs):
        return True
    return any(addr in c for p, q in ((x, y), (y, x)) for c in p.pod_cidrs for addr in outer(q))
