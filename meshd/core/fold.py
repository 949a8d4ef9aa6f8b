"""What a WireGuard device holds after peer actions were applied to it, computed rather than read back.
Pure. The agent keeps its view of the device current this way between full reads (which stay the
authority: a periodic resync reads the device itself)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from operator import attrgetter

from meshd.core import actions as a
from meshd.core.model import IPNetwork
from meshd.core.moves import Moves
from meshd.core.state import ObservedPeer, ObservedWireGuard

PEER_ACTIONS = (a.AddPeer, a.UpdatePeer, a.RemovePeer)
_RAW = attrgetter("public_key.raw")


def fold_peers(device: ObservedWireGuard, actions: Iterable[a.Action], moves: Moves) -> ObservedWireGuard:
    """`device` after the peer actions among `actions` (others are ignored), as the device applies them:
    an allowed IP belongs to one peer, so giving it to one takes it from any other; an upsert without an
    endpoint keeps the one the device had (it may have learned it). Only the peers holding an allowed IP
    the actions give, and those the actions touch, are looked at again: the rest stay the same objects.
    Which peers went and came is told to `moves` (the agent's)."""
    ours = [x for x in actions if isinstance(x, PEER_ACTIONS)]
    if not ours:
        return device
    before = dict(zip(map(_RAW, device.peers), device.peers, strict=True))
    peers = dict(before)
    given = frozenset().union(*(_allowed(x) for x in ours))
    holders = {k for k, p in peers.items() if not p.allowed_ips.isdisjoint(given)} if given else set()
    for action in ours:
        match action:
            case a.AddPeer(spec):
                key = spec.public_key.raw
                old = peers.get(key)
                endpoint = spec.endpoint if spec.endpoint is not None else (old.endpoint if old else None)
                _take(peers, holders, key, spec.allowed_ips)
                peers[key] = ObservedPeer(
                    spec.public_key, endpoint, spec.allowed_ips, spec.persistent_keepalive
                )
                holders.add(key)
            case a.UpdatePeer(public_key, endpoint, allowed, keepalive) if public_key.raw in peers:
                key = public_key.raw
                peer = peers[key]
                if endpoint is not None:
                    peer = replace(peer, endpoint=endpoint)
                if allowed is not None:
                    _take(peers, holders, key, allowed)
                    peer = replace(peer, allowed_ips=allowed)
                    holders.add(key)
                if keepalive is not None:
                    peer = replace(peer, persistent_keepalive=keepalive)
                peers[key] = peer
            case a.RemovePeer(public_key):
                peers.pop(public_key.raw, None)
                holders.discard(public_key.raw)
    folded = tuple(peers.values())
    if len(before) == len(device.peers):  # which peers went and came, for the diff (meshd.core.moves)
        touched = holders.union(*(_key(x) for x in ours))
        went = [before[k] for k in touched if k in before and before[k] is not peers.get(k)]
        moves.tell(
            device.peers,
            folded,
            went,
            [peers[k] for k in touched if k in peers and peers[k] is not before.get(k)],
        )
    return replace(device, peers=folded)


def _key(action: a.Action) -> tuple[bytes, ...]:
    match action:
        case a.AddPeer(spec):
            return (spec.public_key.raw,)
        case a.UpdatePeer() | a.RemovePeer():
            return (action.public_key.raw,)
    return ()


def _allowed(action: a.Action) -> frozenset[IPNetwork]:
    match action:
        case a.AddPeer(spec):
            return spec.allowed_ips
        case a.UpdatePeer(allowed_ips=allowed) if allowed is not None:
            return allowed
    return frozenset()


def _take(
    peers: dict[bytes, ObservedPeer], holders: set[bytes], owner: bytes, allowed: frozenset[IPNetwork]
) -> None:
    """Take `allowed` from every other peer; only `holders` can hold any of it."""
    for key in holders:
        peer = peers.get(key)
        if key != owner and peer is not None and peer.allowed_ips & allowed:
            peers[key] = replace(peer, allowed_ips=peer.allowed_ips - allowed)
