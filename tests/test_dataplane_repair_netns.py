"""The real product path with no datastore (tests/support/dataplane.py), against state changed behind
its back: entries deleted by hand, a foreign overlapping route, a node leaving the cluster, and the
agent-side process killed while pods talk.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keys.values import PrivateKey
from meshd.core.actions import AddFdb, AddNeighbor, AddPeer, ReplaceRoute
from meshd.core.codec.node import decode_node
from meshd.core.model import Endpoint, LabelSelector, MeshConfig, Node
from meshd.core.state import FdbEntry, NeighborEntry, PeerSpec, Route
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from meshd.demo.traffic import PingRun
from overlay.userspace import WireGuardGo
from tests.support.dataplane import (
    VX,
    Cluster,
    Member,
    counting_writes,
    lab_mesh,
    member,
    peers_by_key,
    pod_pairs,
    registered,
    unreachable,
)
from tests.support.dataplane_agent import request
from tests.support.wg import peers_of

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
ENCRYPT = (("meshd.io/encrypt", "yes"),)
PORT = 51820
RTM_NEWROUTE, RTM_NEWNEIGH = 24, 28  # FDB entries are RTM_NEWNEIGH too (AF_BRIDGE)


def cannot_reach(lab: Lab, src: LabNode, dst: LabNode) -> bool:
    return not any(lab.ping(src.pod_ns, str(ip), wait=1) for ip in dst.pod_ips)


async def test_hand_deleted_entries_are_restored_and_a_foreign_route_is_left_alone(tmp_path: Path) -> None:
    """node0↔node1 over VXLAN (node1 is outside the selector), node0↔node2 over WireGuard. On node0 one
    route, one FDB entry, one neighbour entry and one WireGuard peer are deleted by hand: the next diff is
    exactly the four actions that restore them, and a route of someone else inside node1's pod CIDR is
    reported and left in place."""
    selective = MeshConfig(node_selector=LabelSelector(match_labels=ENCRYPT))
    async with lab_mesh(tmp_path, config=selective) as (lab, cluster):
        n0, n1, n2 = cluster.members
        cluster.label("node0", ENCRYPT)
        cluster.label("node2", ENCRYPT)
        await cluster.converge()
        assert unreachable(lab, pod_pairs([n0.node, n1.node, n2.node]), attempts=30) == []

        (cidr1,), mac1 = n1.node.pod_cidrs, cluster.records["node1"].vxlan_mac
        assert mac1 is not None
        route = Route(cidr1, VX, via=cidr1.network_address, onlink=True)
        fdb, neighbor = FdbEntry(mac1, n1.node.underlay), NeighborEntry(VX, cidr1.network_address, mac1)
        peer = PeerSpec(
            n2.public_key, Endpoint(n2.node.underlay, PORT), frozenset(n2.node.pod_cidrs), node="node2"
        )
        ns = n0.node.ns
        lab.ip(ns, "route", "del", str(cidr1), "dev", VX)
        lab.sh(ns, "bridge", "fdb", "del", mac1, "dev", VX, "dst", str(n1.node.underlay))
        lab.ip(ns, "neigh", "del", str(cidr1.network_address), "dev", VX)
        lab.sh(ns, "wg", "set", n0.node.wg_name, "peer", n2.public_key.base64, "remove")
        upper_half = (cidr1.network_address + cidr1.num_addresses // 2, cidr1.prefixlen + 1)
        foreign = Route(ipaddress.ip_network(upper_half), "pod0")  # not holding node1's pod nor gateway
        lab.ip(ns, "route", "add", str(foreign.dst), "dev", "pod0")
        assert cannot_reach(lab, n0.node, n1.node) and cannot_reach(lab, n0.node, n2.node)

        step = await cluster.step(n0)
        assert set(step.actions) == {
            AddPeer(peer),
            AddNeighbor(neighbor),
            AddFdb(VX, fdb),
            ReplaceRoute(route),
        }
        assert len(step.actions) == 4
        assert step.actual.foreign_routes == {foreign}
        with counting_writes() as writes:  # and each is one kernel write
            await n0.dataplane.apply(step.actions)
        assert len(writes.uapi) == 1 and "adding peer node2" in writes.uapi[0]
        assert sorted(t for t, _ in writes.netlink_writes) == [RTM_NEWROUTE, RTM_NEWNEIGH, RTM_NEWNEIGH]

        assert (await cluster.step(n0)).actions == ()
        assert foreign in (await n0.dataplane.routes.observe())[1]
        assert str(foreign.dst) in lab.ip(ns, "route", "show", str(foreign.dst)).stdout
        pairs = [(n0.node, n1.node), (n1.node, n0.node), (n0.node, n2.node), (n2.node, n0.node)]
        assert unreachable(lab, pairs, attempts=30) == []


async def state_of(m: Member) -> dict[str, frozenset[object]]:
    ours, foreign = await m.dataplane.routes.observe()
    links = m.dataplane.links
    return {
        "peers": frozenset((p.public_key, p.endpoint, p.allowed_ips) for p in await peers_of(m.wg)),
        "routes": frozenset(ours),
        "foreign": frozenset(foreign),
        "fdb": frozenset(await links.observe_fdb(VX)),
        "neighbors": frozenset(await links.observe_neighbors(VX)),
        "addresses": frozenset(await links.link_addresses(VX)) | await links.link_addresses(m.node.wg_name),
    }


async def test_removing_a_node_removes_exactly_its_entries(tmp_path: Path) -> None:
    async with lab_mesh(tmp_path, pod_v6=True) as (lab, cluster):
        n0, n1, n2 = cluster.members
        await cluster.converge()
        assert unreachable(lab, pod_pairs([n0.node, n1.node, n2.node]), attempts=30) == []
        gone = cluster.records["node2"]
        before = {m.name: await state_of(m) for m in (n0, n1)}
        sessions = {m.name: await peers_by_key(m) for m in (n0, n1)}

        del cluster.records["node2"]
        await cluster.converge([n0, n1])

        def of_node2(kind: str, item: object) -> bool:
            match kind, item:
                case "peers", (key, _, _):
                    return bool(key == gone.public_key)
                case "routes", Route(dst=dst):
                    return dst in gone.pod_cidrs
                case "fdb", FdbEntry(mac=mac, dst=dst):
                    return mac == gone.vxlan_mac and dst == gone.underlay_ip
                case "neighbors", NeighborEntry(ip=ip):
                    return any(ip in c for c in gone.pod_cidrs)
            return False

        for m, other in ((n0, n1), (n1, n0)):
            after = await state_of(m)
            for kind, items in before[m.name].items():
                removed = {x for x in items if of_node2(kind, x)}
                if kind in ("peers", "fdb"):
                    assert len(removed) == 1, (m.name, kind, items)
                elif kind in ("routes", "neighbors"):
                    assert len(removed) == 2, (m.name, kind, items)  # one per pod family
                assert after[kind] == items - removed, (m.name, kind)
            kept = (await peers_by_key(m))[other.public_key]
            assert kept.last_handshake == sessions[m.name][other.public_key].last_handshake
        assert unreachable(lab, [(n0.node, n1.node), (n1.node, n0.node)]) == []
        assert cannot_reach(lab, n0.node, n2.node)


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_a_new_agent_adopts_wireguard_go_after_the_old_one_is_killed_mid_traffic(
    tmp_path: Path,
) -> None:
    """node0's first apply runs in a child process inside node0's namespace (netns=None, like the agent);
    it is SIGKILLed while pod0 pings pod1. wireguard-go keeps running; a new Dataplane adopts it: its
    pass changes nothing and writes nothing, sessions keep their handshake and counters, no ping is lost."""
    with lab_cluster(3) as (lab, nodes):
        key0 = PrivateKey.generate()
        async with member(nodes[1], tmp_path) as n1, member(nodes[2], tmp_path) as n2:
            cluster = Cluster([n1, n2], records={"node0": registered(nodes[0])})
            await cluster.converge()

            child_log = tmp_path / "agent-side.log"
            with child_log.open("wb") as log:
                child = lab.popen(
                    nodes[0].ns, sys.executable, "-m", "tests.support.dataplane_agent",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )  # fmt: skip
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(request(nodes[0], key0, tmp_path, list(cluster.records.values())))
            child.stdin.flush()
            line = await asyncio.to_thread(child.stdout.readline)
            assert line, f"the agent-side process failed:\n{child_log.read_text()[-2000:]}"
            record = decode_node(json.loads(line))
            assert isinstance(record, Node) and record.public_key == key0.public_key()
            cluster.records["node0"] = record
            await cluster.converge()
            assert unreachable(lab, pod_pairs(nodes), attempts=30) == []

            async with member(nodes[0], tmp_path, key0) as n0:
                assert isinstance(n0.wg, WireGuardGo)
                pid, before = n0.wg.pid(), await peers_by_key(n0)
                assert pid is not None and running(pid)
                ping = PingRun.start(lab, nodes[0], nodes[1], seconds=4)
                await asyncio.sleep(1)
                os.kill(child.pid, signal.SIGKILL)
                await asyncio.to_thread(child.wait, 10)
                assert running(pid), "wireguard-go died with the agent-side process"

                cluster.members.insert(0, n0)
                with counting_writes() as writes:
                    assert await cluster.run_pass(n0) == ()
                assert writes.netlink_writes == [] and writes.uapi == []
                after = await peers_by_key(n0)
                assert set(after) == set(before) == {n1.public_key, n2.public_key}
                for k, p in after.items():
                    assert p.last_handshake == before[k].last_handshake
                    assert p.rx_bytes >= before[k].rx_bytes and p.tx_bytes >= before[k].tx_bytes
                assert after[n1.public_key].tx_bytes > before[n1.public_key].tx_bytes  # the ping flowed
                sent, received = await asyncio.to_thread(ping.finish)
                assert sent > 0 and received == sent, (sent, received)
                assert n0.wg.pid() == pid and running(pid)
