"""Setting preshared keys on both WireGuard backends (wireguard-go's UAPI text, kernel genl through the
behavioural fake), and the PSK manager's bookkeeping against a recording device: which PSKs it clears,
what it reports (never a key)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from keys.values import PrivateKey, PublicKey
from meshd.core.model import LocalNode, MeshConfig, Node, Snapshot, Transport, WireGuardSettings
from meshd.core.state import DesiredState, ObservedPeer, PairDecision, PeerSpec, WireGuardReading
from meshd.errors import InvalidValueError, PermanentError
from meshd.pq.manager import PskManager
from meshd.pq.report import PskCollector, render, status
from overlay import uapi, uapi_get
from overlay.kernel import KernelWireGuard
from overlay.wg_msgs import WGPEER_F_UPDATE_ONLY
from tests.fakes.wg_genl import FakeWireGuardNetlink
from tests.support.wg import add_peer
from tests.support.wg_specs import peer, spec_for

PSK = bytes(range(32))
A, B, C = PublicKey(b"\x01" * 32), PublicKey(b"\x02" * 32), PublicKey(b"\x03" * 32)


def test_uapi_sets_and_clears_only_the_preshared_key_of_existing_peers() -> None:
    request = uapi.encode_preshared_keys([(A, PSK), (B, None)])
    assert request == (
        f"set=1\npublic_key={A.hex}\nupdate_only=true\npreshared_key={PSK.hex()}\n"
        f"public_key={B.hex}\nupdate_only=true\npreshared_key={'00' * 32}\n\n"
    )


def test_uapi_refuses_a_short_psk_without_showing_it() -> None:
    with pytest.raises(InvalidValueError) as info:
        uapi.encode_preshared_keys([(A, PSK[:31])])
    assert PSK[:31].hex() not in str(info.value)


async def test_kernel_sets_the_psk_of_a_peer_and_nothing_else() -> None:
    fake = FakeWireGuardNetlink()
    key = PrivateKey.generate()
    dev = KernelWireGuard("meshd0", key, client=fake)
    await dev.create(spec_for(key))
    spec = peer(3, "198.19.3.0/24")
    await add_peer(dev, spec)
    await dev.set_preshared_keys([(spec.public_key, PSK), (B, PSK)])  # B is no peer: update-only skips it
    got = fake.devices["meshd0"].peers
    assert got[spec.public_key].preshared_key == PSK and B not in got
    assert got[spec.public_key].allowed_ips == [ipaddress.ip_network("198.19.3.0/24")]
    assert fake.calls[-1][2].flags == WGPEER_F_UPDATE_ONLY  # type: ignore[attr-defined]
    await dev.set_preshared_keys([(spec.public_key, None)])
    assert got[spec.public_key].preshared_key == bytes(32)
    with pytest.raises(PermanentError):
        await dev.set_preshared_keys([(spec.public_key, b"short")])


class Recorder:
    name = "pq-absent0"  # no such link: the manager opens no listener

    def __init__(self, *, held: frozenset[PublicKey] = frozenset()) -> None:
        self.writes: list[list[tuple[PublicKey, bytes | None]]] = []
        self.held = set(held)  # peers holding a PSK, as a read of the device shows them
        self.reads = 0

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        self.writes.append(list(changes))
        self.held = (self.held | {k for k, psk in changes if psk}) - {k for k, psk in changes if not psk}

    async def observe_device(self) -> WireGuardReading:
        self.reads += 1
        return WireGuardReading(
            None, 0, tuple(ObservedPeer(k, None, frozenset(), has_psk=True) for k in self.held)
        )


def mesh(*, pq_peer: bool) -> tuple[Snapshot, LocalNode, DesiredState]:
    def node(i: int, pq: bool) -> Node:
        return Node(
            f"node{i}",
            ipaddress.ip_address(f"198.18.0.{i + 1}"),
            (ipaddress.ip_network(f"198.19.{i + 1}.0/24"),),
            public_key=PublicKey(bytes([i + 1]) * 32),
            capabilities=frozenset({Transport.WIREGUARD}),
            post_quantum=pq,
        )

    me, other = node(0, True), node(1, pq_peer)
    assert other.public_key is not None
    config = MeshConfig(wireguard=WireGuardSettings(post_quantum=True))
    desired = DesiredState(
        peers=(PeerSpec(other.public_key, None, frozenset(other.pod_cidrs), node=other.name),),
        pairs=(PairDecision(other.name, Transport.WIREGUARD, ""),),
    )
    return Snapshot.of([me, other], config), LocalNode(me), desired


async def test_a_restart_with_no_psk_on_the_device_writes_nothing() -> None:
    device = Recorder()
    manager = PskManager(node="node0", device=device, port=0)
    for _ in range(3):
        await manager.update(*mesh(pq_peer=False))
    assert (device.writes, device.reads) == ([], 1)


async def test_a_pass_with_an_equal_view_is_not_taken_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every resync hands the manager the same plan, with its own node built afresh (equal values)."""
    import meshd.pq.manager as manager_module
    from meshd.pq.follow import PqPlanned, replan_pairs

    plans: list[PqPlanned] = []

    def counted(*args: Any) -> PqPlanned:
        plans.append(replan_pairs(*args))
        return plans[-1]

    monkeypatch.setattr(manager_module, "replan_pairs", counted)
    manager = PskManager(node="node0", device=Recorder(), port=0)
    snapshot, local, desired = mesh(pq_peer=True)
    for _ in range(3):
        await manager.update(snapshot, replace(local), desired)
    assert len(plans) == 1
    await manager.update(snapshot, replace(local, underlay_mtu=1400), desired)  # a changed view is taken
    assert len(plans) == 2
    await manager.close()


async def test_peers_that_join_later_are_not_read_for_an_earlier_runs_psk() -> None:
    device = Recorder()
    manager = PskManager(node="node0", device=device, port=0)
    snapshot, local, desired = mesh(pq_peer=False)
    await manager.update(snapshot, local, desired)
    (other,) = (n for n in snapshot.nodes if isinstance(n, Node) and n.name == "node1")
    later = replace(other, name="node2", public_key=C)
    grown = replace(
        desired,
        peers=(*desired.peers, PeerSpec(C, None, frozenset(later.pod_cidrs), node="node2")),
        pairs=(*desired.pairs, PairDecision("node2", Transport.WIREGUARD, "")),
    )
    await manager.update(Snapshot.of([*snapshot.nodes, later], snapshot.config), local, grown)
    assert (device.writes, device.reads) == ([], 1), "the device was read once, at the first pass"
    assert [p["node"] for p in status(manager)["peers"]] == ["node1", "node2"]
    await manager.close()


async def test_manager_clears_psks_of_pairs_that_do_not_take_part_once() -> None:
    device = Recorder(held=frozenset({B}))
    manager = PskManager(node="node0", device=device, port=0)
    await manager.update(*mesh(pq_peer=False))  # an earlier run left a PSK: cleared
    await manager.update(*mesh(pq_peer=False))  # known clear: no read, no write
    assert device.writes == [[(B, None)]] and device.reads == 1
    assert status(manager)["peers"] == [{"node": "node1", "state": "off", "reason": "peer-not-taking-part"}]
    await manager.update(*mesh(pq_peer=True))  # takes part now: pending, we initiate (node0 < node1)
    doc = status(manager)
    assert doc["peers"][0]["state"] == "pending" and doc["peers"][0]["role"] == "initiator"
    await manager.update(*mesh(pq_peer=False))  # and stops again: its PSK is cleared again
    assert device.writes[-1] == [(B, None)]
    await manager.close()


async def test_report_shows_fingerprints_and_states_never_keys() -> None:
    manager = PskManager(node="node0", device=Recorder(), port=0, clock=lambda: 100.0)
    await manager.update(*mesh(pq_peer=True))
    st = manager.states["node1"]
    st.epoch, st.fingerprint, st.since = 3, "0a1b2c3d", 90.0
    doc = {"postQuantum": status(manager)}
    assert "node1: active (epoch 3, fingerprint 0a1b2c3d, age 10.0s)" in render(doc)
    registry = CollectorRegistry()
    registry.register(PskCollector(manager))
    text = generate_latest(registry).decode()
    assert 'meshd_peer_psk{peer="node1",state="active"} 1.0' in text
    assert 'meshd_peer_psk{peer="node1",state="pending"} 0.0' in text
    assert "meshd_psk_exchanges_total 0.0" in text
    await manager.close()


async def test_per_peer_psk_series_only_while_post_quantum_is_enabled() -> None:
    """Disabled in the MeshConfig, every pair is `off`: no per-peer series (4 per peer, thousands at
    scale), while the exchange counters stay."""
    manager = PskManager(node="node0", device=Recorder(), port=0)
    snapshot, local, desired = mesh(pq_peer=True)
    registry = CollectorRegistry()
    registry.register(PskCollector(manager))
    await manager.update(replace(snapshot, config=MeshConfig()), local, desired)
    text = generate_latest(registry).decode()
    assert "meshd_peer_psk{" not in text and "meshd_psk_exchanges_total 0.0" in text
    assert status(manager)["peers"] == [{"node": "node1", "state": "off", "reason": "disabled"}]
    await manager.update(snapshot, local, desired)
    text = generate_latest(registry).decode()
    assert 'meshd_peer_psk{peer="node1",state="pending"} 1.0' in text
    await manager.close()


def test_a_device_read_says_which_peers_hold_a_psk_and_nothing_more() -> None:
    reply = (
        f"private_key={'11' * 32}\nlisten_port=51820\n"
        f"public_key={A.hex}\npreshared_key={PSK.hex()}\nprotocol_version=1\n"
        f"public_key={B.hex}\npreshared_key={'00' * 32}\nerrno=0\n\n"
    )
    peers = {p.public_key: p for p in uapi_get.parse_get(reply).peers}
    assert peers[A].has_psk and not peers[B].has_psk
    assert PSK.hex() not in repr(peers[A])


async def test_the_passs_reading_says_which_peers_an_earlier_run_left_a_psk_on() -> None:
    """The pass hands the manager the device as it found it: the manager does not read it again (5000
    peers at a node's first pass), and clears what that reading shows."""
    device = Recorder(held=frozenset({B}))
    manager = PskManager(node="node0", device=device, port=0)
    found = WireGuardReading(None, 0, (ObservedPeer(B, None, frozenset(), has_psk=True),))
    await manager.update(*mesh(pq_peer=False), found)
    assert (device.writes, device.reads) == ([[(B, None)]], 0)
    await manager.close()
