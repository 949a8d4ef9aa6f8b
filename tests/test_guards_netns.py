"""Guard routes against the real kernel: they coexist with the tunnel route at a worse metric, outlive a
deleted link, are never mistaken for a transport route, and only ours are ever removed."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.agent.guards import SavedGuards, load_saved
from meshd.core.guard import GUARD_METRIC
from meshd.core.state import Route
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from overlay.guards import NetlinkGuards
from overlay.routes import NetlinkRouteTable

pytestmark = pytest.mark.netns

NETS = [ipaddress.ip_network("198.19.50.0/24"), ipaddress.ip_network("2001:db8:50::/64")]


@pytest.fixture
def node() -> Iterator[tuple[Lab, LabNode]]:
    with lab_cluster(1, pod_v6=True) as (lab, nodes):
        yield lab, nodes[0]


def _show(lab: Lab, node: LabNode, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    out = lab.ip(node.ns, f"-{net.version}", "route", "show", "exact", str(net)).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _resolve(lab: Lab, node: LabNode, addr: str) -> str:
    """`ip route get`: the route the kernel picks, or its error (an unreachable route: No route to host)."""
    res = lab.ip(node.ns, "route", "get", addr, check=False)
    return res.stdout + res.stderr


def test_guard_outlives_the_tunnel_link_and_is_not_a_route(node: tuple[Lab, LabNode], tmp_path: Path) -> None:
    lab, n = node
    lab.ip(n.ns, "link", "add", "tun9", "type", "veth", "peer", "name", "tun9p")
    lab.ip(n.ns, "link", "set", "tun9", "up")

    async def scenario() -> None:
        guards = SavedGuards(NetlinkGuards(netns=n.ns), tmp_path / "node.guards.json")
        routes = NetlinkRouteTable(netns=n.ns, watch=NETS)
        try:
            for net in NETS:
                await guards.add_all([net])
                await guards.add_all([net])  # already there: not an error
                await routes.replace(Route(net, "tun9"))
            assert load_saved(tmp_path / "node.guards.json") == frozenset(NETS)
            ours, foreign = await routes.observe()
            assert {r.dst for r in ours} == set(NETS) and foreign == frozenset()  # guards are not routes
            assert await guards.observe() == frozenset(NETS)
            for net in NETS:
                lines = _show(lab, n, net)
                assert any(
                    line.startswith("unreachable") and f"metric {GUARD_METRIC}" in line for line in lines
                )
                assert any("dev tun9" in line for line in lines), lines
            assert "dev tun9" in _resolve(lab, n, "198.19.50.7")  # the tunnel route wins while it is there
            await routes.remove(Route(NETS[0], "tun9"))  # removing our route leaves the guard
            assert await guards.observe() == frozenset(NETS)
            lab.ip(n.ns, "link", "del", "tun9")  # the link goes, and its routes with it
            assert (await routes.observe())[0] == frozenset()
            assert await guards.observe() == frozenset(NETS)
            assert "No route to host" in _resolve(lab, n, "198.19.50.7")
            for net in NETS:
                await guards.remove_all([net])
                await guards.remove_all([net])  # already gone: not an error
            assert await guards.observe() == frozenset()
            assert not (tmp_path / "node.guards.json").exists()
        finally:
            await guards.table.close()  # type: ignore[attr-defined]
            await routes.close()

    asyncio.run(scenario())


def test_foreign_drop_routes_are_left_alone_and_saved_guards_come_back(
    node: tuple[Lab, LabNode], tmp_path: Path
) -> None:
    lab, n = node
    lab.ip(n.ns, "route", "add", "unreachable", "198.19.50.0/24", "metric", str(GUARD_METRIC))  # not ours
    lab.ip(n.ns, "route", "add", "blackhole", "198.19.50.128/25", "proto", "static")
    hops = ("nexthop", "via", "198.18.0.50", "dev", "eth0", "nexthop", "via", "198.18.0.51", "dev", "eth0")
    lab.ip(n.ns, "route", "add", "198.19.50.64/26", *hops)  # a multipath route: it does send somewhere

    async def scenario() -> None:
        kernel = NetlinkGuards(netns=n.ns)
        routes = NetlinkRouteTable(netns=n.ns, watch=NETS)
        path = tmp_path / "g.json"
        path.write_text('{"guards": ["198.19.50.0/24", "2001:db8:50::/64"]}')
        try:
            assert await kernel.observe() == frozenset()  # the foreign unreachable route is not ours
            assert await SavedGuards(kernel, path).install_saved() == 2  # its slot is taken: reported
            assert await kernel.observe() == frozenset({NETS[1]})
            _, foreign = await routes.observe()
            assert {(str(r.dst), r.dev) for r in foreign} == {
                ("198.19.50.0/24", ""),
                ("198.19.50.128/25", ""),
                ("198.19.50.64/26", "eth0"),
            }
            await kernel.remove_all([NETS[0]])  # never matches the foreign one
            assert any(line.startswith("unreachable") for line in _show(lab, n, NETS[0]))
        finally:
            await kernel.close()
            await routes.close()

    asyncio.run(scenario())
