"""NetlinkRouteTable against the real kernel: only routes with our protocol are changed; others are reported."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from meshd.core.state import RTPROT_MESHD, Route
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from meshd.errors import PermanentError
from overlay.routes import NetlinkRouteTable

pytestmark = pytest.mark.netns


@dataclass(frozen=True)
class Family:
    """Addresses of one family; the tests are written once and run for both."""

    flag: str
    dst: str  # a peer's pod CIDR we route
    gw_eth: str  # onlink gateway through eth0
    gw_pod: str  # onlink gateway through pod0
    inner: str  # a more specific network inside `dst`
    watched: str  # a peer's pod CIDR we do not route yet
    watched_inner: str


FAMILIES = [
    pytest.param(
        Family("-4", "198.19.50.0/24", "198.18.0.50", "198.19.1.50", "198.19.50.128/25", "198.19.60.0/24",
               "198.19.60.0/26"),
        id="ipv4",
    ),
    pytest.param(
        Family("-6", "2001:db8:50::/64", "2001:db8:18::50", "2001:db8:19:1::50", "2001:db8:50::/80",
               "2001:db8:60::/64", "2001:db8:60::/96"),
        id="ipv6",
    ),
]  # fmt: skip


@pytest.fixture
def node() -> Iterator[tuple[Lab, LabNode]]:
    with lab_cluster(1, pod_v6=True) as (lab, nodes):
        yield lab, nodes[0]


def _route(f: Family, *, dev: str = "eth0") -> Route:
    gw = f.gw_eth if dev == "eth0" else f.gw_pod
    return Route(dst=ipaddress.ip_network(f.dst), dev=dev, via=ipaddress.ip_address(gw), onlink=True)


def _kernel_routes(lab: Lab, ns: str, f: Family, dst: str) -> list[str]:
    out = lab.ip(ns, f.flag, "route", "show", "table", "all", "exact", dst).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("f", FAMILIES)
async def test_replace_observe_remove(node: tuple[Lab, LabNode], f: Family) -> None:
    lab, n = node
    route = _route(f)
    async with NetlinkRouteTable(netns=n.ns) as table:
        await table.replace(route)
        await table.replace(route)  # idempotent
        ours, foreign = await table.observe()
        assert ours == {route}
        assert foreign == frozenset()
        [line] = _kernel_routes(lab, n.ns, f, f.dst)
        assert f"via {f.gw_eth} dev eth0 proto {RTPROT_MESHD}" in line and "onlink" in line

        await table.remove(route)
        await table.remove(route)  # already gone: no-op
        assert await table.observe() == (frozenset(), frozenset())
    assert _kernel_routes(lab, n.ns, f, f.dst) == []


@pytest.mark.parametrize("f", FAMILIES)
async def test_replace_moves_a_route_between_devices(node: tuple[Lab, LabNode], f: Family) -> None:
    lab, n = node
    async with NetlinkRouteTable(netns=n.ns) as table:
        await table.replace(_route(f, dev="eth0"))
        await table.replace(_route(f, dev="pod0"))
        ours, _ = await table.observe()
        assert ours == {_route(f, dev="pod0")}
        await table.remove(_route(f, dev="eth0"))  # the old placement: the moved route stays
        assert (await table.observe())[0] == {_route(f, dev="pod0")}
    [line] = _kernel_routes(lab, n.ns, f, f.dst)
    assert f"via {f.gw_pod} dev pod0" in line


@pytest.mark.parametrize("f", FAMILIES)
async def test_foreign_routes_are_reported_and_never_touched(node: tuple[Lab, LabNode], f: Family) -> None:
    lab, n = node
    for dst in (f.inner, f.watched, f.watched_inner):
        lab.ip(n.ns, f.flag, "route", "add", dst, "dev", "pod0", "proto", "static")
    lab.ip(n.ns, f.flag, "route", "add", "default", "dev", "eth0", "proto", "static")  # broader: not reported
    async with NetlinkRouteTable(netns=n.ns, watch=[ipaddress.ip_network(f.watched)]) as table:
        await table.replace(_route(f))
        ours, foreign = await table.observe()
        assert ours == {_route(f)}
        assert {str(r.dst) for r in foreign} == {f.inner, f.watched, f.watched_inner}
        assert {r.dev for r in foreign} == {"pod0"}

        for dst in (f.inner, f.watched):
            await table.remove(Route(dst=ipaddress.ip_network(dst), dev="pod0"))
        with pytest.raises(PermanentError, match=rf"route to {f.watched} .*protocol 4\) .*is not ours"):
            await table.replace(Route(dst=ipaddress.ip_network(f.watched), dev="eth0"))
        assert len((await table.observe())[1]) == 3

        table.watch_networks([])
        assert {str(r.dst) for r in (await table.observe())[1]} == {f.inner}
    for dst in (f.inner, f.watched, f.watched_inner):
        [line] = _kernel_routes(lab, n.ns, f, dst)
        assert "dev pod0 proto static" in line


async def test_another_table_is_separate(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    f = Family("-4", "198.19.50.0/24", "198.18.0.50", "", "", "", "")
    async with NetlinkRouteTable(netns=n.ns, table=100) as other, NetlinkRouteTable(netns=n.ns) as main:
        await other.replace(_route(f))
        assert (await other.observe())[0] == {_route(f)}
        assert (await main.observe())[0] == frozenset()
    assert "table 100" in _kernel_routes(lab, n.ns, f, f.dst)[0]


async def test_an_ipv6_move_the_kernel_refuses_keeps_our_old_route(node: tuple[Lab, LabNode]) -> None:
    """Moving an IPv6 pod route onto an onlink gateway goes delete-then-add when the kernel refuses the
    in-place replace. If the add is refused too (here: a foreign /48 on eth0 covers the gateway, so the
    gateway's device mismatches), our previous route is put back: the destination never loses it."""
    lab, n = node
    dst = ipaddress.ip_network("2001:db8:19:2::/64")
    gw = ipaddress.ip_address("2001:db8:19:2::")
    lab.ip(n.ns, "link", "add", "alt0", "type", "veth", "peer", "name", "alt1")
    lab.ip(n.ns, "link", "set", "alt0", "up")
    routes = NetlinkRouteTable(netns=n.ns)
    try:
        await routes.observe()
        await routes.replace(Route(dst=dst, dev="pod0"))
        lab.ip(n.ns, "-6", "route", "add", "2001:db8:19::/48", "dev", "eth0", "proto", "static")
        with pytest.raises(PermanentError):
            await routes.replace(Route(dst=dst, dev="alt0", via=gw, onlink=True))
        out = lab.ip(n.ns, "-6", "route", "show", "exact", str(dst)).stdout
        (line,) = [x for x in out.splitlines() if x.strip()]
        assert "dev pod0" in line and f"proto {RTPROT_MESHD}" in line
    finally:
        await routes.close()
