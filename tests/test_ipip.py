"""IPIP links: real where the kernel has ipip (`-m kernel`: scripts/vm runs it in a VM with Debian's
kernel), a clear UnsupportedError where it does not (like this host)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from meshd.core.state import IpipDeviceSpec
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from meshd.errors import PermanentError, UnsupportedError
from tests.support.kernel import kernel, require_kernel
from vxlan.ipip import IPIP
from vxlan.links import PROBE_NAME, NetlinkLinks, ipip_supported

pytestmark = pytest.mark.netns

NAME = "meshd-ipip"


@pytest.fixture
def node() -> Iterator[tuple[Lab, LabNode]]:
    with lab_cluster(1) as (lab, nodes):
        yield lab, nodes[0]


def _spec(n: LabNode) -> IpipDeviceSpec:
    gw = ipaddress.ip_interface(f"{n.pod_cidrs[0].network_address}/32")
    return IpipDeviceSpec(name=NAME, local=n.underlay, mtu=1480, addresses=frozenset({gw}))


def _links(lab: Lab, ns: str) -> str:
    return lab.ip(ns, "-o", "link", "show").stdout


async def test_probe_leaves_nothing_behind(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    before = _links(lab, n.ns)
    await ipip_supported(netns=n.ns)
    assert PROBE_NAME not in _links(lab, n.ns)
    assert _links(lab, n.ns) == before


@kernel
async def test_ipip_link_on_a_kernel_with_ipip(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    await require_kernel(n.ns)
    async with NetlinkLinks(netns=n.ns) as links:
        await links.create_link(_spec(n), IPIP)
        await links.create_link(_spec(n), IPIP)  # idempotent
        seen = await links.observe_link(NAME, IPIP)
        assert seen is not None
        assert (seen.local, seen.mtu, seen.addresses) == (n.underlay, 1480, _spec(n).addresses)
        await links.delete_link(NAME)
        assert await links.observe_link(NAME, IPIP) is None
    assert NAME not in _links(lab, n.ns)


async def test_create_ipip_without_the_module_is_unsupported(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    if await ipip_supported(netns=n.ns):
        pytest.skip("this kernel has ipip")
    async with NetlinkLinks(netns=n.ns) as links:
        with pytest.raises(UnsupportedError, match=rf"kernel lacks ipip: creating IPIP link {NAME}"):
            await links.create_link(_spec(n), IPIP)
        assert await links.observe_link(NAME, IPIP) is None
    assert NAME not in _links(lab, n.ns)


async def test_a_foreign_link_with_the_ipip_name_is_left_alone(node: tuple[Lab, LabNode]) -> None:
    lab, n = node
    lab.ip(n.ns, "link", "add", NAME, "type", "bridge")
    async with NetlinkLinks(netns=n.ns) as links:
        with pytest.raises(PermanentError, match=rf"link {NAME} exists and is not ours \(kind bridge\)"):
            await links.observe_link(NAME, IPIP)
        with pytest.raises(PermanentError, match="not ours"):
            await links.create_link(_spec(n), IPIP)
    assert "bridge" in lab.ip(n.ns, "-d", "link", "show", NAME).stdout
