"""A three-node VXLAN mesh built only with NetlinkLinks and NetlinkRouteTable; real packets between pods.

Each node: VXLAN device (vni 4096, port 4789, learning off) on its underlay, holding its pod CIDRs'
network addresses as gateways; per peer: neighbour (peer gateway → peer VXLAN MAC), FDB (peer MAC → peer
underlay) and an onlink route (peer pod CIDR via peer gateway dev VXLAN).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from meshd.core.state import FdbEntry, NeighborEntry, Route, VxlanDeviceSpec
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from meshd.demo.traffic import iperf3
from overlay.routes import NetlinkRouteTable
from vxlan.links import NetlinkLinks
from vxlan.vxlan import VXLAN

pytestmark = pytest.mark.netns

VX = "meshd-vxlan"


@dataclass(frozen=True)
class Layout:
    underlay_v6: bool
    pod_v4: bool
    pod_v6: bool


LAYOUTS = [
    pytest.param(Layout(False, True, False), id="v4-pods-v4-underlay"),
    pytest.param(Layout(False, False, True), id="v6-pods-v4-underlay"),
    pytest.param(Layout(True, True, True), id="dual-pods-v6-underlay"),
]


@dataclass
class Node:
    lab: LabNode
    links: NetlinkLinks
    routes: NetlinkRouteTable
    mac: str = ""


@dataclass(frozen=True)
class PeerEntries:
    neighbors: frozenset[NeighborEntry]
    fdb: FdbEntry
    routes: frozenset[Route]


def entries_toward(peer: Node) -> PeerEntries:
    gateways = [(net, net.network_address) for net in peer.lab.pod_cidrs]
    return PeerEntries(
        neighbors=frozenset(NeighborEntry(dev=VX, ip=gw, mac=peer.mac) for _, gw in gateways),
        fdb=FdbEntry(mac=peer.mac, dst=peer.lab.underlay),
        routes=frozenset(Route(dst=net, dev=VX, via=gw, onlink=True) for net, gw in gateways),
    )


async def apply_peer(node: Node, peer: Node) -> None:
    want = entries_toward(peer)
    for neighbor in sorted(want.neighbors, key=str):
        await node.links.add_neighbors([neighbor])
    await node.links.add_fdbs(VX, [want.fdb])
    for route in sorted(want.routes, key=str):
        await node.routes.replace(route)


async def remove_peer(node: Node, peer: Node) -> None:
    """Reverse order: route, then FDB, then neighbour."""
    want = entries_toward(peer)
    for route in sorted(want.routes, key=str):
        await node.routes.remove(route)
    await node.links.remove_fdbs(VX, [want.fdb])
    for neighbor in sorted(want.neighbors, key=str):
        await node.links.remove_neighbors([neighbor])


@pytest.fixture(params=LAYOUTS)
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, list[LabNode]]]:
    layout: Layout = request.param
    with lab_cluster(3, underlay_v6=layout.underlay_v6, pod_v4=layout.pod_v4, pod_v6=layout.pod_v6) as c:
        yield c


@pytest.fixture
async def mesh(cluster: tuple[Lab, list[LabNode]]) -> AsyncIterator[list[Node]]:
    _, lab_nodes = cluster
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for n in lab_nodes:
            links = await stack.enter_async_context(NetlinkLinks(netns=n.ns))
            routes = await stack.enter_async_context(NetlinkRouteTable(netns=n.ns))
            nodes.append(Node(n, links, routes))
        for node in nodes:
            n = node.lab
            overhead = 50 if n.underlay.version == 4 else 70
            gateways = frozenset(
                ipaddress.ip_interface(f"{net.network_address}/{net.max_prefixlen}") for net in n.pod_cidrs
            )
            spec = VxlanDeviceSpec(
                VX, vni=4096, port=4789, local=n.underlay, mtu=1500 - overhead, addresses=gateways
            )
            await node.links.create_link(spec, VXLAN)
            seen = await node.links.observe_link(VX, VXLAN)
            assert seen is not None
            node.mac = seen.mac
        for node in nodes:
            for peer in nodes:
                if peer is not node:
                    await apply_peer(node, peer)
        yield nodes


def pairs(nodes: list[Node]) -> list[tuple[Node, Node]]:
    return [(a, b) for a in nodes for b in nodes if a is not b]


def can_reach(lab: Lab, src: Node, dst: Node, *, attempts: int = 5) -> bool:
    """Every pod address of `dst` answers a ping from the pod of `src` (a fresh pod may need a few
    tries: its IPv6 link-local address is still in DAD, so neighbour discovery has no source yet)."""
    return all(lab.wait_ping(src.lab.pod_ns, str(ip), attempts=attempts) for ip in dst.lab.pod_ips)


def cannot_reach(lab: Lab, src: Node, dst: Node) -> bool:
    return not any(lab.ping(src.lab.pod_ns, str(ip), wait=1) for ip in dst.lab.pod_ips)


def throughput(lab: Lab, client: Node, server: Node) -> float:
    """Bits per second from `client`'s pod to `server`'s pod in a 2 s iperf3 run. The demo's iperf3 helper
    retries while the server is not listening yet (iperf3 -J then exits 0 with only an "error" key)."""
    return iperf3(lab, client.lab, server.lab, seconds=2, family=server.lab.pod_ips[0].version)


async def test_pods_reach_each_other_over_vxlan(cluster: tuple[Lab, list[LabNode]], mesh: list[Node]) -> None:
    lab, _ = cluster
    unreachable = [(a.lab.name, b.lab.name) for a, b in pairs(mesh) if not can_reach(lab, a, b)]
    assert unreachable == []
    assert throughput(lab, mesh[0], mesh[1]) > 0
    assert throughput(lab, mesh[2], mesh[0]) > 0


async def test_each_node_observes_exactly_its_entries(mesh: list[Node]) -> None:
    for node in mesh:
        peers = [entries_toward(p) for p in mesh if p is not node]
        assert await node.links.observe_fdb(VX) == {p.fdb for p in peers}
        assert await node.links.observe_neighbors(VX) == frozenset().union(*(p.neighbors for p in peers))
        ours, foreign = await node.routes.observe()
        assert ours == frozenset().union(*(p.routes for p in peers))
        assert foreign == frozenset()


async def test_hand_deleted_route_and_fdb_are_seen_and_restored(
    cluster: tuple[Lab, list[LabNode]], mesh: list[Node]
) -> None:
    lab, _ = cluster
    node, peer = mesh[1], mesh[2]
    want = entries_toward(peer)
    route = sorted(want.routes, key=str)[0]
    lab.ip(node.lab.ns, "route", "del", str(route.dst), "dev", VX)
    lab.sh(node.lab.ns, "bridge", "fdb", "del", want.fdb.mac, "dev", VX, "dst", str(want.fdb.dst))

    ours, _ = await node.routes.observe()
    assert route not in ours
    assert want.fdb not in await node.links.observe_fdb(VX)
    assert cannot_reach(lab, node, peer)

    await apply_peer(node, peer)  # what a re-apply does
    assert route in (await node.routes.observe())[0]
    assert want.fdb in await node.links.observe_fdb(VX)
    assert can_reach(lab, node, peer)


async def test_removing_one_peer_leaves_the_others(
    cluster: tuple[Lab, list[LabNode]], mesh: list[Node]
) -> None:
    lab, _ = cluster
    a, b, c = mesh
    before_c = (await c.links.observe_fdb(VX), await c.links.observe_neighbors(VX), await c.routes.observe())
    await remove_peer(a, c)
    await remove_peer(a, c)  # already gone: no-op

    keep = entries_toward(b)
    assert await a.links.observe_fdb(VX) == {keep.fdb}
    assert await a.links.observe_neighbors(VX) == keep.neighbors
    assert (await a.routes.observe())[0] == keep.routes
    assert (
        await c.links.observe_fdb(VX),
        await c.links.observe_neighbors(VX),
        await c.routes.observe(),
    ) == before_c

    assert cannot_reach(lab, a, c)
    working = [(x.lab.name, y.lab.name) for x, y in [(a, b), (b, a), (b, c), (c, b)] if can_reach(lab, x, y)]
    assert working == [("node0", "node1"), ("node1", "node0"), ("node1", "node2"), ("node2", "node1")]
