"""Both WireGuard backends on the real product path (tests/support/dataplane.py): kernel WireGuard with
wireguard-go peers in one mesh, drift repaired with exactly the missing pieces, and the per-peer
handshake and byte figures each backend reports (kernel: generic netlink; wireguard-go: UAPI) checked
against `wg show`. The kernel variants are marked `kernel` (scripts/vm runs them in a VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keys.values import PublicKey
from meshd.core.actions import AddPeer, ReplaceRoute
from meshd.core.model import MeshConfig
from meshd.core.state import ObservedPeer, Route
from meshd.demo.netlab import Lab
from tests.support.dataplane import Member, lab_mesh, peers_by_key, pod_pairs, unreachable
from tests.support.kernel import BACKEND, kernel

pytestmark = pytest.mark.netns


def link_kind(lab: Lab, m: Member) -> str:
    """`wireguard` for a kernel device; wireguard-go's device is a `tun`."""
    detail = lab.ip(m.node.ns, "-d", "-o", "link", "show", m.node.wg_name).stdout
    return "wireguard" if " wireguard " in detail else "tun" if " tun " in detail else detail


@kernel
@pytest.mark.parametrize(
    "backends", [("kernel", "kernel", "userspace"), ("userspace", "userspace", "kernel")], ids=str
)
async def test_kernel_and_wireguard_go_peers_mesh_in_both_directions(
    tmp_path: Path, backends: tuple[str, str, str]
) -> None:
    """Mixed nodes, dual-stack pods: every pod reaches every other pod, kernel -> wireguard-go and back,
    and both sides of each mixed pair count a handshake and bytes."""
    async with lab_mesh(tmp_path, pod_v6=True, config=MeshConfig(), backends=backends) as (lab, cluster):
        await cluster.converge()
        kinds = [link_kind(lab, m) for m in cluster.members]
        assert kinds == ["wireguard" if b == "kernel" else "tun" for b in backends]
        assert unreachable(lab, pod_pairs([m.node for m in cluster.members]), attempts=30) == []
        for m in cluster.members:
            peers = await peers_by_key(m)
            assert set(peers) == {o.public_key for o in cluster.members if o is not m}
            for key, peer in peers.items():
                assert peer.last_handshake and peer.rx_bytes > 0 and peer.tx_bytes > 0, (m.name, key)


@pytest.mark.parametrize("backend", BACKEND)
async def test_a_peer_and_a_route_deleted_by_hand_come_back_with_exactly_their_actions(
    tmp_path: Path, backend: str
) -> None:
    async with lab_mesh(tmp_path, backends=(backend,) * 3) as (lab, cluster):
        await cluster.converge()
        n0, n1, n2 = cluster.members
        wanted = {p.public_key: p for p in (await cluster.step(n0)).desired.peers}
        lost_route = Route(n2.node.pod_cidrs[0], n0.node.wg_name)
        lab.sh(n0.node.ns, "wg", "set", n0.node.wg_name, "peer", n1.public_key.base64, "remove")
        lab.ip(n0.node.ns, "route", "del", str(lost_route.dst), "dev", n0.node.wg_name)
        assert n1.public_key not in await peers_by_key(n0)

        applied = await cluster.run_pass(n0)
        assert sorted(applied, key=repr) == sorted(
            [AddPeer(wanted[n1.public_key]), ReplaceRoute(lost_route)], key=repr
        )
        assert await cluster.run_pass(n0) == ()
        assert unreachable(lab, [(n0.node, n1.node), (n0.node, n2.node)], attempts=30) == []


def wg_dump(lab: Lab, m: Member) -> dict[str, tuple[int, int, int]]:
    """`wg show IF dump`, per peer: (latest handshake, rx bytes, tx bytes)."""
    lines = lab.sh(m.node.ns, "wg", "show", m.node.wg_name, "dump").stdout.splitlines()[1:]
    return {f[0]: (int(f[4]), int(f[5]), int(f[6])) for f in (line.split("\t") for line in lines)}


def figures(peer: ObservedPeer) -> tuple[int, int, int]:
    return int(peer.last_handshake or 0), peer.rx_bytes, peer.tx_bytes


@pytest.mark.parametrize("backend", BACKEND)
async def test_per_peer_handshake_and_bytes_match_wg_show(tmp_path: Path, backend: str) -> None:
    """What meshd reads (genl for the kernel, UAPI for wireguard-go) is what `wg show` reads: the same
    handshake second, and byte counters between two of meshd's own readings around wg's."""
    async with lab_mesh(tmp_path, pod_v6=True, backends=(backend,) * 3) as (lab, cluster):
        await cluster.converge()
        assert unreachable(lab, pod_pairs([m.node for m in cluster.members]), attempts=30) == []
        for m in cluster.members:
            before: dict[PublicKey, ObservedPeer] = await peers_by_key(m)
            shown = wg_dump(lab, m)
            after = await peers_by_key(m)
            assert (
                set(shown)
                == {k.base64 for k in before}
                == {o.public_key.base64 for o in cluster.members if o is not m}
            )
            for key, peer in before.items():
                hs, rx, tx = shown[key.base64]
                first, last = figures(peer), figures(after[key])
                assert hs > 0 and hs in (first[0], last[0]), (m.name, hs, first, last)
                assert first[1] <= rx <= last[1] and first[2] <= tx <= last[2], (m.name, shown, first, last)
                assert first[1] > 0 and first[2] > 0
