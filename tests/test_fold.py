"""fold_peers: the WireGuard device the agent computes after applying peer actions equals the device the
behavioural fake holds after the same actions, for any earlier and later cluster (hypothesis)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings

from keys.values import PublicKey
from meshd.agent.kernel_view import FOLDED
from meshd.core import actions as a
from meshd.core.diff import diff
from meshd.core.fold import fold_peers
from meshd.core.model import Endpoint, IPNetwork
from meshd.core.moves import Moves
from meshd.core.state import ObservedPeer, ObservedWireGuard, PeerSpec, Route
from tests.fakes import FakeDataplane
from tests.support.clusters import Cluster, clusters
from tests.told import told_exactly


def _peers(device: ObservedWireGuard | None) -> dict[object, object]:
    return {p.public_key: p for p in device.peers} if device else {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), clusters())
def test_folded_peers_equal_the_device_after_the_same_actions(earlier: Cluster, later: Cluster) -> None:
    moves = Moves()
    me = earlier.nodes[0]  # the same node, before and after its cluster changed
    fake = FakeDataplane()
    fake.apply(diff(earlier.plan_for(me), fake.observe()))
    before = fake.observe()
    actions = diff(later.plan_for(me, (me, *later.nodes[1:], *later.invalid)), before)
    fake.apply(actions)
    if before.wireguard is None or not all(isinstance(x, FOLDED) for x in actions):
        return  # a device-level change: the agent reads the kernel again instead of folding
    assert _peers(fold_peers(before.wireguard, actions, moves)) == _peers(fake.observe().wireguard)


def _reference(device: ObservedWireGuard, actions: list[a.Action]) -> ObservedWireGuard:
    """The fold as first written: every action looks at every peer."""
    peers = {p.public_key: p for p in device.peers}

    def take(owner: PublicKey, allowed: frozenset[IPNetwork]) -> None:
        for key, peer in list(peers.items()):
            if key != owner and peer.allowed_ips & allowed:
                peers[key] = replace(peer, allowed_ips=peer.allowed_ips - allowed)

    for action in actions:
        match action:
            case a.AddPeer(spec):
                old = peers.get(spec.public_key)
                endpoint = spec.endpoint if spec.endpoint is not None else (old.endpoint if old else None)
                take(spec.public_key, spec.allowed_ips)
                peers[spec.public_key] = ObservedPeer(
                    spec.public_key, endpoint, spec.allowed_ips, spec.persistent_keepalive
                )
            case a.UpdatePeer(key, endpoint, allowed, keepalive) if key in peers:
                peer = peers[key]
                if endpoint is not None:
                    peer = replace(peer, endpoint=endpoint)
                if allowed is not None:
                    take(key, allowed)
                    peer = replace(peer, allowed_ips=allowed)
                if keepalive is not None:
                    peer = replace(peer, persistent_keepalive=keepalive)
                peers[key] = peer
            case a.RemovePeer(key):
                peers.pop(key, None)
    return replace(device, peers=tuple(peers.values()))


def test_random_peer_actions_fold_as_the_device_takes_them_in_order() -> None:
    """Random actions over a few keys and allowed IPs (so IPs move between peers, peers come back): the
    fold equals the reference, peer order included; untouched peers stay the same objects."""
    moves = Moves()
    keys = [PublicKey(bytes([i]) * 32) for i in range(1, 7)]
    nets = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(5)]
    ends = [None, Endpoint(ipaddress.ip_address("198.18.0.9"), 51820)]
    for seed in range(300):
        rng = random.Random(seed)

        def ips(rng: random.Random = rng) -> frozenset[IPNetwork]:
            return frozenset(rng.sample(nets, rng.randrange(3)))

        start = {k: ObservedPeer(k, rng.choice(ends), ips()) for k in rng.sample(keys, rng.randrange(5))}
        device = ObservedWireGuard("meshd0", keys[0], 51820, 1420, peers=tuple(start.values()))
        actions: list[a.Action] = []
        for _ in range(rng.randrange(6)):
            key, kind = rng.choice(keys), rng.randrange(4)
            if kind == 0:
                actions.append(a.AddPeer(PeerSpec(key, rng.choice(ends), ips(), rng.randrange(2))))
            elif kind == 1:
                allowed = rng.choice([None, ips()])
                actions.append(a.UpdatePeer(key, rng.choice(ends), allowed, rng.choice([None, 5])))
            elif kind == 2:
                actions.append(a.RemovePeer(key))
            else:
                actions.append(a.ReplaceRoute(Route(rng.choice(nets), "meshd0")))
        folded = fold_peers(device, actions, moves)
        assert folded.peers == _reference(device, actions).peers, f"seed {seed}"
        if folded.peers is not device.peers:  # it says which peers went and came (for the diff)
            assert told_exactly(moves, device.peers, folded.peers), f"seed {seed}"
        touched = {
            x.peer.public_key if isinstance(x, a.AddPeer) else getattr(x, "public_key", None) for x in actions
        }
        given = frozenset().union(*(x.peer.allowed_ips for x in actions if isinstance(x, a.AddPeer)))
        given |= frozenset().union(*(x.allowed_ips or () for x in actions if isinstance(x, a.UpdatePeer)))
        for peer in device.peers:
            if peer.public_key not in touched and peer.allowed_ips.isdisjoint(given):
                assert peer in folded.peers and any(p is peer for p in folded.peers)
