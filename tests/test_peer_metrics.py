"""The per-peer metrics name each peer by its node, as the last plan knows it; a peer the plan does not
know (yet) is named by its short key. The names follow the plan as it changes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from keys.values import PrivateKey
from meshd.agent.metrics import PeerCollector
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.state import ActualState, DesiredState, ObservedPeer, PeerSpec, WireGuardReading

KNOWN, STRANGER = PrivateKey.generate().public_key(), PrivateKey.generate().public_key()


class Device:
    async def observe_device(self) -> WireGuardReading:
        peers = tuple(ObservedPeer(k, None, frozenset(), rx_bytes=5) for k in (KNOWN, STRANGER))
        return WireGuardReading(None, 51820, peers)


def _plan(node: str) -> tuple[DesiredState, ActualState]:
    return DesiredState(peers=(PeerSpec(KNOWN, None, frozenset(), node=node),)), ActualState()


async def test_peers_are_named_by_the_node_the_last_plan_gives_them() -> None:
    view = MeshView(Identity(name="node-a", public_key=PrivateKey.generate().public_key()), Device())
    collector, registry = PeerCollector(view), CollectorRegistry()
    registry.register(collector)
    view.last = _plan("node-b")
    await collector.refresh()
    text = generate_latest(registry).decode()
    assert 'meshd_peer_receive_bytes_total{peer="node-b"} 5.0' in text
    assert f'meshd_peer_receive_bytes_total{{peer="{STRANGER.short}"}} 5.0' in text
    view.last = _plan("node-c")  # the same key, now planned for another node
    text = generate_latest(registry).decode()
    assert 'peer="node-c"' in text and 'peer="node-b"' not in text
