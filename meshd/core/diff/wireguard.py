"""Minimal per-peer WireGuard diff (after Talos' encode(desired, existing)). Pure.

A changed peer gets one `UpdatePeer` holding only what changed; a peer is never removed and re-added to
change it, and no other peer's allowed IPs are rewritten. The comparison is asymmetric: an endpoint the
kernel learned by roaming is not drift unless we pinned one.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshd.core import actions as a
from meshd.core.state import ObservedPeer, PeerSpec


def diff_peers(
    desired: Iterable[PeerSpec], actual: Iterable[ObservedPeer]
) -> tuple[tuple[a.Action, ...], tuple[a.Action, ...]]:
    """(adds and updates, removals), each sorted by public key."""
    want = {p.public_key: p for p in desired}
    have = {p.public_key: p for p in actual}
    changes: list[a.Action] = []
    for key in sorted(want):
        spec = want[key]
        seen = have.get(key)
        if seen is None:
            changes.append(a.AddPeer(spec))
            continue
        update = peer_update(spec, seen)
        if update is not None:
            changes.append(update)
    removes = tuple(a.RemovePeer(key) for key in sorted(have) if key not in want)
    return tuple(changes), removes


def peer_update(spec: PeerSpec, seen: ObservedPeer) -> a.UpdatePeer | None:
    """The fields of one existing peer that differ from what we want, or None when nothing does."""
    endpoint = spec.endpoint if spec.endpoint is not None and spec.endpoint != seen.endpoint else None
    allowed = spec.allowed_ips if spec.allowed_ips != seen.allowed_ips else None
    keepalive = spec.persistent_keepalive if spec.persistent_keepalive != seen.persistent_keepalive else None
    if endpoint is None and allowed is None and keepalive is None:
        return None
    return a.UpdatePeer(
        spec.public_key,
        endpoint=endpoint,
        allowed_ips=allowed,
        persistent_keepalive=keepalive,
        node=spec.node,
    )
