"""What a WireGuard device holds after peer actions were applied to it, computed rather than read back.
Pure. The agent keeps its view of the device current this way between full reads (which stay the
authority: a periodic resync reads the device itself)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from keys.values import PublicKey
from meshd.core import actions as a
from meshd.core.model import IPNetwork
from meshd.core.state import ObservedPeer, ObservedWireGuard


def fold_peers(device: ObservedWireGuard, actions: Iterable[a.Action]) -> ObservedWireGuard:
    """`device` after the peer actions among `actions` (others are ignored), as the device applies them:
    an allowed IP belongs to one peer, so giving it to one takes it from any other; an upsert without an
    endpoint keeps the one the device had (it may have learned it)."""
    peers = {p.public_key: p for p in device.peers}
    for action in actions:
        match action:
            case a.AddPeer(spec):
                old = peers.get(spec.public_key)
                endpoint = spec.endpoint if spec.endpoint is not None else (old.endpoint if old else None)
                _take(peers, spec.public_key, spec.allowed_ips)
                peers[spec.public_key] = ObservedPeer(
                    spec.public_key, endpoint, spec.allowed_ips, spec.persistent_keepalive
                )
            case a.UpdatePeer(key, endpoint, allowed, keepalive) if key in peers:
                peer = peers[key]
                if endpoint is not None:
                    peer = replace(peer, endpoint=endpoint)
                if allowed is not None:
                    _take(peers, key, allowed)
                    peer = replace(peer, allowed_ips=allowed)
                if keepalive is not None:
                    peer = replace(peer, persistent_keepalive=keepalive)
                peers[key] = peer
            case a.RemovePeer(key):
                peers.pop(key, None)
    return replace(device, peers=tuple(peers.values()))


def _take(peers: dict[PublicKey, ObservedPeer], owner: PublicKey, allowed: frozenset[IPNetwork]) -> None:
    for key, peer in list(peers.items()):
        if key != owner and peer.allowed_ips & allowed:
            peers[key] = replace(peer, allowed_ips=peer.allowed_ips - allowed)
