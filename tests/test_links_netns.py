"""NetlinkLinks against the real kernel, inside lab namespaces: VXLAN links, MTU, addresses, neighbours, FDB."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshd.core.state import FdbEntry, NeighborEntry, VxlanDeviceSpec
from meshd.demo.netlab import Lab, LabNode, lab_cluster, run
from meshd.errors import BatchError, PermanentError
from meshd.netlink import NetlinkSocket
from vxlan.links import NetlinkLinks
from vxlan.vxlan import VXLAN

pytestmark = pytest.mark.netns

VX = "meshd-vxlan"
MAC_A, MAC_B = "aa:bb:cc:00:00:0a", "aa:bb:cc:00:00:0b"


@pytest.fixture(params=[False, True], ids=["v4-underlay", "v6-underlay"])
def node(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, LabNode]]:
    with lab_cluster(1, underlay_v6=request.param, pod_v6=request.param) as (lab, nodes):
        yield lab, nodes[0]


def _mtu(node: LabNode) -> int:
    """The underlay's 1500 minus the VXLAN overhead: 50 bytes over IPv4, 70 over IPv6."""
    return 1500 - (50 if node.underlay.version == 4 else 70)


def _spec(node: LabNode) -> VxlanDeviceSpec:
    net = node.pod_cidrs[0]
    addr = ipaddress.ip_interface(f"{net.network_address}/{net.max_prefixlen}")
    return VxlanDeviceSpec(
        name=VX, vni=4096, port=4789, local=node.underlay, mtu=_mtu(node), addresses=frozenset({addr})
    )


def _link_json(lab: Lab, ns: str, name: str) -> dict[str, object]:
    out = lab.ip(ns, "-d", "-j", "link", "show", name).stdout
    return dict(json.loads(out)[0])


def _peer_underlay(node: LabNode, i: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return node.underlay + i


async def test_create_and_observe_vxlan(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    spec = _spec(n)
    async with NetlinkLinks(netns=n.ns) as links:
        assert await links.observe_link(VX, VXLAN) is None
        await links.create_link(spec, VXLAN)
        await links.create_link(spec, VXLAN)  # idempotent
        seen = await links.observe_link(VX, VXLAN)

    shown = _link_json(lab, n.ns, VX)
    info = shown["linkinfo"]["info_data"]  # type: ignore[index]
    assert seen is not None
    assert (seen.vni, seen.port, seen.local, seen.mtu) == (4096, 4789, n.underlay, _mtu(n))
    assert seen.mac == shown["address"]
    assert seen.addresses == spec.addresses
    assert info["learning"] is False
    assert info["link"] == "eth0"
    assert "UP" in shown["flags"]  # type: ignore[operator]


async def test_mtu_and_addresses(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    extra = ipaddress.ip_interface("2001:db8:77::1/128")
    async with NetlinkLinks(netns=n.ns) as links:
        await links.create_link(_spec(n), VXLAN)
        await links.set_mtu(VX, 1400)
        await links.add_address(VX, extra)
        await links.add_address(VX, extra)
        assert await links.link_mtu(VX) == 1400
        assert extra in await links.link_addresses(VX)
        assert "2001:db8:77::1/128" in lab.ip(n.ns, "addr", "show", "dev", VX).stdout
        await links.remove_address(VX, extra)
        await links.remove_address(VX, extra)  # already gone: no-op
        assert await links.link_addresses(VX) == _spec(n).addresses
        assert await links.link_mtu("nothere0") is None
        assert await links.link_mtu(VX) is not None
        await links.delete_link(VX)
        await links.delete_link(VX)  # already gone: no-op
        assert await links.link_mtu(VX) is None
    assert lab.ip(n.ns, "link", "show", VX, check=False).returncode != 0


async def test_neighbors_are_idempotent_and_learned_ones_ignored(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    gw = n.pod_cidrs[0].network_address + 256 * 256  # another node's gateway, somewhere else
    entry = NeighborEntry(dev=VX, ip=gw, mac=MAC_A)
    async with NetlinkLinks(netns=n.ns) as links:
        await links.create_link(_spec(n), VXLAN)
        await links.add_neighbors([entry])
        await links.add_neighbors([entry])
        learned = gw + 1
        lab.ip(n.ns, "neigh", "add", str(learned), "lladdr", MAC_B, "dev", VX, "nud", "reachable")
        assert await links.observe_neighbors(VX) == {entry}
        assert "PERMANENT" in lab.ip(n.ns, "neigh", "show", str(gw), "dev", VX).stdout

        moved = NeighborEntry(dev=VX, ip=gw, mac=MAC_B)
        await links.add_neighbors([moved])
        await links.remove_neighbors([entry])  # stale MAC: the new entry stays
        assert await links.observe_neighbors(VX) == {moved}
        await links.remove_neighbors([moved])
        await links.remove_neighbors([moved])
        assert await links.observe_neighbors(VX) == frozenset()
    assert MAC_B in lab.ip(n.ns, "neigh", "show", str(learned), "dev", VX).stdout


async def test_fdb_entries(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    a = FdbEntry(mac=MAC_A, dst=_peer_underlay(n, 1))
    b = FdbEntry(mac=MAC_B, dst=_peer_underlay(n, 2))
    async with NetlinkLinks(netns=n.ns) as links:
        await links.create_link(_spec(n), VXLAN)
        for entry in (a, a, b):
            await links.add_fdbs(VX, [entry])
        assert await links.observe_fdb(VX) == {a, b}
        shown = lab.sh(n.ns, "bridge", "fdb", "show", "dev", VX).stdout
        assert f"{MAC_A} dst {a.dst} self permanent" in shown

        moved = FdbEntry(mac=MAC_A, dst=_peer_underlay(n, 3))
        await links.add_fdbs(VX, [moved])  # the peer's underlay changed: one entry, new dst
        await links.remove_fdbs(VX, [a])  # exact mac + dst: the moved one stays
        assert await links.observe_fdb(VX) == {moved, b}
        await links.remove_fdbs(VX, [b])
        await links.remove_fdbs(VX, [b])
        assert await links.observe_fdb(VX) == {moved}


async def test_foreign_link_with_our_name_is_left_alone(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    lab.ip(n.ns, "link", "add", VX, "type", "bridge")
    async with NetlinkLinks(netns=n.ns) as links:
        with pytest.raises(PermanentError, match=rf"link {VX} exists and is not ours \(kind bridge\)"):
            await links.observe_link(VX, VXLAN)
        with pytest.raises(PermanentError, match="not ours"):
            await links.create_link(_spec(n), VXLAN)
    assert _link_json(lab, n.ns, VX)["linkinfo"]["info_kind"] == "bridge"  # type: ignore[index]


async def test_errors_say_what_was_being_done(node: tuple[Lab, LabNode]) -> None:
    _, n = node
    wrong_family = ipaddress.ip_address("2001:db8:99::1" if n.underlay.version == 4 else "198.18.9.9")
    async with NetlinkLinks(netns=n.ns) as links:
        with pytest.raises(PermanentError, match=f"link {VX} does not exist"):
            await links.add_fdbs(VX, [FdbEntry(mac=MAC_A, dst=_peer_underlay(n, 1))])
        await links.create_link(_spec(n), VXLAN)
        with pytest.raises(
            PermanentError, match=rf"adding FDB entry {MAC_A} → {wrong_family} on {VX}"
        ) as err:
            await links.add_fdbs(VX, [FdbEntry(mac=MAC_A, dst=wrong_family)])
        assert isinstance(err.value, BatchError) and len(err.value.failed) == 1  # the one request, named
        await links.remove_fdbs(VX, [FdbEntry(mac=MAC_A, dst=wrong_family)])  # not there: no-op


async def test_missing_namespace_is_an_error_not_created() -> None:
    name = "mt-no-such-ns-0"
    async with NetlinkLinks(netns=name) as links:
        with pytest.raises(PermanentError, match=f"network namespace {name} does not exist"):
            await links.link_mtu("lo")
    assert name not in run(["ip", "netns", "list"]).stdout


async def test_a_link_index_in_our_own_namespace_is_the_one_netlink_gives(node: tuple[Lab, LabNode]) -> None:
    """An agent looks link indexes up in its own namespace with one ioctl; a socket into another namespace
    asks netlink: both give the same index, and None for a missing link."""
    lab, n = node
    async with NetlinkLinks(netns=n.ns) as links:
        await links.create_link(_spec(n), VXLAN)
        async with NetlinkSocket(netns=n.ns) as sock:
            by_netlink = [await sock.index_of(name) for name in (VX, "lo", "no-such-link")]
    code = (
        "import asyncio, json; from meshd.netlink import NetlinkSocket; s = NetlinkSocket(); "
        f"print(json.dumps([asyncio.run(s.index_of(x)) for x in {[VX, 'lo', 'no-such-link']!r}])); s.close()"
    )
    own = lab.popen(n.ns, sys.executable, "-c", code, stdout=subprocess.PIPE)
    out, _ = own.communicate(timeout=60)
    assert json.loads(out) == by_netlink
    assert by_netlink[0] is not None and by_netlink[2] is None
