"""WireGuardGo against real wireguard-go processes in node namespaces of a lab cluster."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.model import Endpoint
from meshd.core.state import ObservedPeer, PeerSpec, WireGuardDeviceSpec
from meshd.errors import PermanentError, TransientError
from overlay.uapi import UapiError
from overlay.userspace import UapiClient, WireGuardGo
from tests.support.netns import Lab, LabNode, lab_cluster
from tests.support.wg import add_peer, exists, peers_of, remove_peer, update_peer

pytestmark = pytest.mark.netns
PORT = 51820
REPO = Path(__file__).resolve().parent.parent


def wg_address(node: LabNode) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if node.underlay.version == 6:
        return ipaddress.IPv6Interface(f"2001:db8:1:ff::{node.index + 1:x}/128")
    return ipaddress.IPv4Interface(f"198.19.200.{node.index + 1}/32")


def peer_of(node: LabNode, key: PrivateKey, *, keepalive: int = 0) -> PeerSpec:
    allowed = frozenset({*node.pod_cidrs, wg_address(node).network})
    return PeerSpec(key.public_key(), Endpoint(node.underlay, PORT), allowed, keepalive, node=node.name)


async def start(lab: Lab, nodes: Sequence[LabNode], run_dir: Path) -> list[tuple[WireGuardGo, PrivateKey]]:
    devices = []
    for node in nodes:
        key = PrivateKey.generate()
        dev = WireGuardGo(node.wg_name, key, node.ns, run_dir=run_dir)
        await dev.create(WireGuardDeviceSpec(node.wg_name, key.public_key(), PORT, 1420))
        lab.ip(node.ns, "addr", "add", str(wg_address(node)), "dev", node.wg_name, *nodad(node))
        devices.append((dev, key))
    return devices


def nodad(node: LabNode) -> list[str]:
    return ["nodad"] if node.underlay.version == 6 else []


async def mesh(lab: Lab, nodes: Sequence[LabNode], devices: Sequence[tuple[WireGuardGo, PrivateKey]]) -> None:
    """Every node peers with every other and routes the others' pod CIDRs into its wg link."""
    for node, (dev, _) in zip(nodes, devices, strict=True):
        for other, (_, other_key) in zip(nodes, devices, strict=True):
            if other is node:
                continue
            await add_peer(dev, peer_of(other, other_key))
            for cidr in other.pod_cidrs:
                lab.ip(node.ns, f"-{cidr.version}", "route", "add", str(cidr), "dev", node.wg_name)


def by_key(peers: Sequence[ObservedPeer]) -> dict[PublicKey, ObservedPeer]:
    return {p.public_key: p for p in peers}


def running(pid: int | None) -> bool:
    if pid is None or not os.path.exists(f"/proc/{pid}"):
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize(
    ("underlay_v6", "pod_v4", "pod_v6"),
    [
        pytest.param(False, True, False, id="v4"),
        pytest.param(False, True, True, id="dual-stack-pods"),
        pytest.param(True, False, True, id="v6-underlay-v6-pods"),
    ],
)
async def test_pods_reach_each_other_through_the_tunnel(
    tmp_path: Path, underlay_v6: bool, pod_v4: bool, pod_v6: bool
) -> None:
    with lab_cluster(2, underlay_v6=underlay_v6, pod_v4=pod_v4, pod_v6=pod_v6) as (lab, nodes):
        devices = await start(lab, nodes, tmp_path)
        await mesh(lab, nodes, devices)
        for dst in nodes[1].pod_ips:
            assert lab.wait_ping(nodes[0].pod_ns, str(dst)), f"pod0 cannot reach {dst}"
        (seen,) = await peers_of(devices[0][0])
        assert seen.public_key == devices[1][1].public_key()
        assert seen.endpoint == Endpoint(nodes[1].underlay, PORT)
        assert seen.last_handshake is not None
        assert seen.rx_bytes > 0 and seen.tx_bytes > 0


async def test_changing_one_peer_leaves_the_others_sessions_alone(tmp_path: Path) -> None:
    with lab_cluster(3) as (lab, nodes):
        devices = await start(lab, nodes, tmp_path)
        await mesh(lab, nodes, devices)
        for other in nodes[1:]:
            assert lab.wait_ping(nodes[0].pod_ns, str(other.pod_ips[0]))
        dev = devices[0][0]
        k1, k2 = devices[1][1].public_key(), devices[2][1].public_key()
        before = by_key(await peers_of(dev))

        new_ips = frozenset({*nodes[2].pod_cidrs, ipaddress.ip_network("198.19.250.0/24")})
        await update_peer(dev, UpdatePeer(k2, allowed_ips=new_ips))
        await update_peer(dev, UpdatePeer(k2, persistent_keepalive=30))
        after = by_key(await peers_of(dev))
        assert after[k1] == before[k1]
        assert after[k2].allowed_ips == new_ips and after[k2].persistent_keepalive == 30
        assert after[k2].last_handshake == before[k2].last_handshake

        await add_peer(dev, peer_of(nodes[1], devices[1][1]))  # re-applying the same peer
        assert by_key(await peers_of(dev))[k1] == before[k1]

        await remove_peer(dev, k2)
        assert list(by_key(await peers_of(dev))) == [k1]
        assert lab.ping(nodes[0].pod_ns, str(nodes[1].pod_ips[0]))


async def test_invalid_values_send_nothing(tmp_path: Path) -> None:
    with lab_cluster(2) as (lab, nodes):
        devices = await start(lab, nodes, tmp_path)
        dev = devices[0][0]
        bad = PeerSpec(devices[1][1].public_key(), None, frozenset(), persistent_keepalive=70000)
        with pytest.raises(ValueError, match="keepalive"):
            await add_peer(dev, bad)
        assert await peers_of(dev) == ()
        good = [PeerSpec(PrivateKey.generate().public_key(), None, frozenset()) for _ in range(600)]
        with pytest.raises(ValueError, match="keepalive"):  # the last of 601 is bad: none goes in
            await dev.apply_peers([AddPeer(p) for p in (*good, bad)])
        assert await peers_of(dev) == ()


async def test_an_agent_restart_adopts_the_running_wireguard_go(tmp_path: Path) -> None:
    with lab_cluster(2) as (lab, nodes):
        devices = await start(lab, nodes, tmp_path)
        await mesh(lab, nodes, devices)
        assert lab.wait_ping(nodes[0].pod_ns, str(nodes[1].pod_ips[0]))
        dev, key = devices[0]
        pid, before = dev.pid(), await peers_of(dev)

        again = WireGuardGo(nodes[0].wg_name, key, nodes[0].ns, run_dir=tmp_path)
        await again.create(WireGuardDeviceSpec(nodes[0].wg_name, key.public_key(), PORT, 1420))
        assert again.pid() == pid and running(pid)
        after = await peers_of(again)
        assert [(p.public_key, p.allowed_ips, p.last_handshake) for p in after] == [
            (p.public_key, p.allowed_ips, p.last_handshake) for p in before
        ]


CHILD = """
import asyncio, sys
from pathlib import Path
from keys.values import PrivateKey
from meshd.core.state import WireGuardDeviceSpec
from overlay.uapi import UapiError
from overlay.userspace import UapiClient, WireGuardGo
name, ns, run_dir = sys.argv[1:4]
key = PrivateKey.from_base64(sys.stdin.readline())
dev = WireGuardGo(name, key, ns, run_dir=Path(run_dir))
asyncio.run(dev.create(WireGuardDeviceSpec(name, key.public_key(), 51820, 1420)))
print(dev.pid(), flush=True)
sys.stdin.read()
"""


async def test_wireguard_go_survives_the_death_of_the_agent_that_started_it(tmp_path: Path) -> None:
    with lab_cluster(2) as (lab, nodes):
        node = nodes[0]
        key = PrivateKey.generate()
        child = lab.popen(
            None,
            sys.executable,
            "-c",
            CHILD,
            node.wg_name,
            node.ns,
            str(tmp_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(key.base64.encode() + b"\n")
        child.stdin.flush()
        pid = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

        assert running(pid)
        dev = WireGuardGo(node.wg_name, key, node.ns, run_dir=tmp_path)
        assert await exists(dev)
        assert (await dev.observe_device()).public_key == key.public_key()  # type: ignore[union-attr]
        await add_peer(dev, peer_of(nodes[1], PrivateKey.generate()))
        assert len(await peers_of(dev)) == 1


async def test_delete_removes_link_socket_and_process(tmp_path: Path) -> None:
    with lab_cluster(1) as (lab, nodes):
        ((dev, _),) = await start(lab, nodes, tmp_path)
        pid = dev.pid()
        assert running(pid) and dev.socket_path.exists()
        await dev.delete()
        assert not running(pid)
        assert not dev.socket_path.exists()
        assert nodes[0].wg_name not in lab.ip(nodes[0].ns, "-o", "link").stdout
        assert not await exists(dev)


async def test_a_wireguard_go_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    with lab_cluster(1) as (_, nodes):
        key = PrivateKey.generate()
        dev = WireGuardGo(nodes[0].wg_name, key, nodes[0].ns, run_dir=tmp_path, binary="no-such-wireguard-go")
        with pytest.raises(PermanentError, match="exited before creating") as err:
            await dev.create(WireGuardDeviceSpec(nodes[0].wg_name, key.public_key(), PORT, 1420))
        assert "no-such-wireguard-go" in str(err.value)  # the log tail: ip netns exec could not run it
        assert key.base64 not in str(err.value)


async def test_an_errno_reply_is_a_permanent_error_naming_the_operation(tmp_path: Path) -> None:
    with lab_cluster(1) as (lab, nodes):
        ((dev, _),) = await start(lab, nodes, tmp_path)
        client = UapiClient(dev.socket_path)
        with pytest.raises(
            UapiError, match=r"adding peer abcd1234\.\.\.: wireguard-go replied errno=-22"
        ) as err:
            await client.set("set=1\npublic_key=zz\n\n", "adding peer abcd1234...")
        assert isinstance(err.value, PermanentError) and err.value.errno == -22


async def test_a_missing_socket_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="reading"):
        await UapiClient(tmp_path / "absent.sock", timeout=1).get("reading the device")


async def test_a_dead_socket_is_absence_but_a_silent_one_is_an_error(tmp_path: Path) -> None:
    """A socket file nobody serves (wireguard-go was SIGKILLed) means "no device": the agent starts one.
    A socket that accepts and never answers is a hung wireguard-go: an error, never a second instance."""
    key = PrivateKey.generate()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "dead0.sock"))
    stale.close()  # the file stays, nobody listens: connection refused
    dead = WireGuardGo("dead0", key, run_dir=tmp_path, socket_dir=tmp_path, timeout=1)
    assert await dead.observe_device() is None
    assert not await exists(dead)

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_unix_server(never_answer, str(tmp_path / "hung0.sock"))
    try:
        hung = WireGuardGo("hung0", key, run_dir=tmp_path, socket_dir=tmp_path, timeout=0.5)
        with pytest.raises(TransientError, match="no reply"):
            await hung.observe_device()
    finally:
        server.close()


async def test_a_batch_of_peer_changes_is_one_set_and_matches_the_single_calls(tmp_path: Path) -> None:
    """600 new peers, then an update, a remove and an add together: each as the one-by-one calls would
    leave it, each batch in one UAPI set."""
    with lab_cluster(1) as (lab, nodes):
        ((dev, _),) = await start(lab, nodes, tmp_path)
        keys = [PrivateKey.generate().public_key() for _ in range(601)]
        specs = [
            PeerSpec(
                k, Endpoint(ipaddress.ip_address("198.18.1.1") + i, PORT), frozenset({net}), node=f"n{i}"
            )
            for i, (k, net) in enumerate(
                zip(keys, ipaddress.IPv4Network("198.19.0.0/16").subnets(new_prefix=26), strict=False)
            )
        ]
        sets: list[str] = []
        real_set = dev._uapi.set

        async def counting_set(request: str, operation: str) -> None:
            sets.append(operation)
            await real_set(request, operation)

        dev._uapi.set = counting_set  # type: ignore[method-assign]
        await dev.apply_peers([AddPeer(s) for s in specs[:600]])
        assert len(sets) == 1
        assert {p.public_key for p in await peers_of(dev)} == set(keys[:600])
        await dev.apply_peers(
            [UpdatePeer(keys[0], persistent_keepalive=25), RemovePeer(keys[1]), AddPeer(specs[600])]
        )
        assert len(sets) == 2
        seen = by_key(await peers_of(dev))
        assert keys[1] not in seen and keys[600] in seen and seen[keys[0]].persistent_keepalive == 25
        assert seen[keys[2]].allowed_ips == specs[2].allowed_ips
