"""The real product path, node by node, with no datastore: plan → observe → diff → Dataplane.apply over
wireguard-go or kernel WireGuard, NetlinkLinks and NetlinkRouteTable in three lab nodes (see
tests/support/dataplane.py). The kernel WireGuard variants are marked `kernel` (scripts/vm).

Covers: pod-to-pod traffic over WireGuard then VXLAN in three address layouts; moving one pair between
transports without disturbing the others' sessions; a converged second pass issuing no kernel write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from keys.values import PublicKey
from meshd.core.actions import Action, ReplaceRoute
from meshd.core.model import EncryptionMode, IPNetwork, LabelSelector, MeshConfig
from meshd.core.state import ObservedPeer, Route
from meshd.demo.netlab import Lab
from meshd.demo.traffic import iperf3
from tests.support.dataplane import (
    VX,
    WG_CMD_GET_DEVICE,
    Cluster,
    Member,
    counting_writes,
    lab_mesh,
    peers_by_key,
    pod_pairs,
    unreachable,
)
from tests.support.kernel import BACKEND

pytestmark = pytest.mark.netns

ENCRYPT = (("meshd.io/encrypt", "yes"),)
PLAIN = (("meshd.io/encrypt", "no"),)
SELECTIVE = MeshConfig(node_selector=LabelSelector(match_labels=ENCRYPT))
RTM_NEWROUTE = 24


@dataclass(frozen=True)
class Layout:
    underlay_v6: bool
    pod_v4: bool
    pod_v6: bool
    iperf: bool = False


LAYOUTS = [
    pytest.param(Layout(False, True, False, iperf=True), id="v4-pods-v4-underlay"),
    pytest.param(Layout(False, False, True), id="v6-pods-v4-underlay"),
    pytest.param(Layout(True, True, True), id="dual-pods-v6-underlay"),
]


async def route_devs(m: Member) -> dict[IPNetwork, str]:
    ours, _ = await m.dataplane.routes.observe()
    return {r.dst: r.dev for r in ours}


def wanted_devs(cluster: Cluster, m: Member, dev_for: dict[str, str]) -> dict[IPNetwork, str]:
    """Peer pod CIDR → the link `m` should route it into, `dev_for` naming the transport per peer
    ("wg" or "vx")."""
    devs = {"wg": m.node.wg_name, "vx": VX}
    return {c: devs[dev_for[o.name]] for o in cluster.members if o is not m for c in o.node.pod_cidrs}


def vxlan_route(cidr: IPNetwork) -> Route:
    return Route(cidr, VX, via=cidr.network_address, onlink=True)


def assert_session_kept(before: ObservedPeer, after: ObservedPeer) -> None:
    """Same session: the handshake time did not change and the counters did not go back to zero."""
    assert after.last_handshake == before.last_handshake
    assert after.rx_bytes >= before.rx_bytes and after.tx_bytes >= before.tx_bytes


async def assert_mesh_over(lab: Lab, cluster: Cluster, transport: str, *, iperf: bool) -> None:
    """Every node routes every peer pod CIDR into `transport`'s link, and every pod reaches every other
    pod over it; WireGuard counters show whether it carried the pings."""
    members, nodes = cluster.members, [m.node for m in cluster.members]
    for m in members:
        assert await route_devs(m) == wanted_devs(cluster, m, dict.fromkeys(cluster.records, transport))
    before = {m.name: await peers_by_key(m) for m in members}
    assert unreachable(lab, pod_pairs(nodes), attempts=30) == []
    for m in members:
        peers = await peers_by_key(m)
        assert set(peers) == {o.public_key for o in members if o is not m}  # standby under VXLAN
        for key, peer in peers.items():
            sent = peer.tx_bytes - before[m.name][key].tx_bytes
            if transport == "wg":
                assert peer.last_handshake and peer.rx_bytes and sent > 0, (m.name, peer)
            else:  # none of it went through WireGuard (at most a 32-byte keepalive, never a ping)
                assert sent < 100, (m.name, peer)
    if iperf and not any(m.node.wg_name in kernel_links(lab, m) for m in members):
        bps = iperf3(lab, nodes[0], nodes[1], seconds=3)
        print(f"\niperf3 pod0→pod1 over {transport}: {bps / 1e9:.2f} Gbit/s")
        assert bps > 0


def kernel_links(lab: Lab, m: Member) -> str:
    """The names of the kernel WireGuard links on `m`'s node (wireguard-go's show as kind tun)."""
    return lab.ip(m.node.ns, "-o", "link", "show", "type", "wireguard").stdout


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("layout", LAYOUTS)
async def test_three_nodes_over_vxlan_then_over_wireguard(
    tmp_path: Path, layout: Layout, backend: str
) -> None:
    """Start with encryption Disabled (every pair on VXLAN), then enable it (every pair on WireGuard)."""
    async with lab_mesh(
        tmp_path,
        underlay_v6=layout.underlay_v6,
        pod_v4=layout.pod_v4,
        pod_v6=layout.pod_v6,
        config=MeshConfig(mode=EncryptionMode.DISABLED),
        backends=(backend,) * 3,
    ) as (lab, cluster):
        await cluster.converge()
        await assert_mesh_over(lab, cluster, "vx", iperf=layout.iperf)

        cluster.config = MeshConfig()
        applied = await cluster.converge()
        assert all(isinstance(x, ReplaceRoute) for acts in applied.values() for x in acts), applied
        await assert_mesh_over(lab, cluster, "wg", iperf=layout.iperf)
        kinds = {m.name: m.node.wg_name in kernel_links(lab, m) for m in cluster.members}
        assert kinds == dict.fromkeys(kinds, backend == "kernel")


@pytest.mark.parametrize(
    "layout",
    [
        LAYOUTS[0],
        pytest.param(Layout(False, False, True), id="v6-pods-v4-underlay"),
        pytest.param(Layout(True, True, True), id="dual-pods-v6-underlay"),
    ],
)
async def test_disabling_encryption_moves_every_pair_to_vxlan(tmp_path: Path, layout: Layout) -> None:
    async with lab_mesh(
        tmp_path, underlay_v6=layout.underlay_v6, pod_v4=layout.pod_v4, pod_v6=layout.pod_v6
    ) as (lab, cluster):
        await cluster.converge()
        await assert_mesh_over(lab, cluster, "wg", iperf=False)

        cluster.config = MeshConfig(mode=EncryptionMode.DISABLED)
        applied = await cluster.converge()
        assert all(isinstance(x, ReplaceRoute) for acts in applied.values() for x in acts), applied
        await assert_mesh_over(lab, cluster, "vx", iperf=False)


async def test_moving_one_node_between_transports_leaves_the_other_pairs_alone(tmp_path: Path) -> None:
    async with lab_mesh(tmp_path, config=SELECTIVE) as (lab, cluster):
        n0, n1, n2 = cluster.members
        for m in cluster.members:
            cluster.label(m.name, ENCRYPT)
        await cluster.converge()
        assert unreachable(lab, pod_pairs([m.node for m in cluster.members]), attempts=30) == []
        session = {
            "0-2": (await peers_by_key(n0))[n2.public_key],
            "2-0": (await peers_by_key(n2))[n0.public_key],
        }

        async def check(transport: str) -> dict[str, list[Action]]:
            applied = await cluster.converge()
            dev_for = {
                "node0": {"node1": transport, "node2": "wg"},
                "node1": {"node0": transport, "node2": transport},
                "node2": {"node0": "wg", "node1": transport},
            }
            for m in cluster.members:
                assert await route_devs(m) == wanted_devs(cluster, m, dev_for[m.name]), m.name
            assert_session_kept(session["0-2"], (await peers_by_key(n0))[n2.public_key])
            assert_session_kept(session["2-0"], (await peers_by_key(n2))[n0.public_key])
            assert unreachable(lab, [(n0.node, n1.node), (n1.node, n0.node)], attempts=30) == []
            return applied

        cluster.label("node1", PLAIN)  # node1 leaves the encryption selector: its pairs go VXLAN
        applied = await check("vx")
        # Only routes move: the WireGuard peer stays as standby, FDB/neighbours were standby already.
        assert set(applied["node0"]) == {ReplaceRoute(vxlan_route(c)) for c in n1.node.pod_cidrs}
        assert set(applied["node2"]) == {ReplaceRoute(vxlan_route(c)) for c in n1.node.pod_cidrs}

        cluster.label("node1", ENCRYPT)  # and back
        applied = await check("wg")
        assert set(applied["node0"]) == {ReplaceRoute(Route(c, n0.node.wg_name)) for c in n1.node.pod_cidrs}
        assert set(applied["node2"]) == {ReplaceRoute(Route(c, n2.node.wg_name)) for c in n1.node.pod_cidrs}
        assert unreachable(lab, pod_pairs([m.node for m in cluster.members])) == []


@pytest.mark.parametrize("backend", BACKEND)
async def test_a_converged_pass_writes_nothing_to_the_kernel(tmp_path: Path, backend: str) -> None:
    """Hybrid mesh (node1 outside the selector): WireGuard peers and routes, VXLAN routes, FDB and
    neighbour entries, both pod families. A second pass must diff to () and issue no netlink write, no
    UAPI set and no genl SET_DEVICE; the seam is shown to see writes by a hand-deleted route afterwards."""
    async with lab_mesh(tmp_path, pod_v6=True, config=SELECTIVE, backends=(backend,) * 3) as (lab, cluster):
        cluster.label("node0", ENCRYPT)
        cluster.label("node2", ENCRYPT)
        await cluster.converge()
        assert unreachable(lab, pod_pairs([m.node for m in cluster.members]), attempts=30) == []
        before: dict[str, dict[PublicKey, ObservedPeer]] = {
            m.name: await peers_by_key(m) for m in cluster.members
        }

        with counting_writes() as writes:
            for m in cluster.members:
                assert await cluster.run_pass(m) == (), m.name
        assert writes.netlink_writes == [] and writes.wireguard_writes == []
        assert writes.netlink_reads > 0  # the seam does see this process's netlink traffic
        if backend == "kernel":  # and kernel WireGuard is read through generic netlink
            assert WG_CMD_GET_DEVICE in writes.genl
        assert {m.name: await peers_by_key(m) for m in cluster.members} == before

        n0, n1 = cluster.members[0], cluster.members[1]
        gone = vxlan_route(n1.node.pod_cidrs[0])
        lab.ip(n0.node.ns, "route", "del", str(gone.dst), "dev", VX)
        with counting_writes() as writes:
            assert await cluster.run_pass(n0) == (ReplaceRoute(gone),)
        assert writes.netlink_writes and {t for t, _ in writes.netlink_writes} == {RTM_NEWROUTE}
        assert writes.wireguard_writes == []
