"""Peer changes to kernel WireGuard in batches: every change validated before anything is sent, then as
few set-device messages as fit (overlay/wg_msgs.py) handed to the seam in one call.

The kernel applies the peers of a message in order and stops at one it refuses, so a refused message's
peers are sent once more one peer per message (again in one batch): every peer the kernel takes is
applied, and the error names exactly the peers it refused. A batch is cut where a peer comes back (its
two changes keep their order) so that resending never reorders two changes of one peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keys.values import PublicKey
from meshd.core.actions import AddPeer, PeerAction, RemovePeer, UpdatePeer
from meshd.errors import InvalidValueError
from meshd.netlink import TRANSIENT_ERRNOS, batch_failure
from overlay import wireguard
from overlay.wg_msgs import (
    PSK_SIZE,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    GenlPeer,
    pack,
)

Entry = tuple[str, GenlPeer]
"""A peer to send and what sending it does ("adding peer node1 (AbCd...)"), for the error."""
NAMED = 10
"""A failed batch names at most this many peers, then counts the rest."""


class PeerSender(Protocol):
    async def set_peers(self, name: str, messages: Sequence[Sequence[GenlPeer]]) -> list[int]: ...


def _who(verb: str, key: PublicKey, node: str) -> str:
    return f"{verb} peer {node} ({key.short}...)" if node else f"{verb} peer {key.short}..."


def peer_entry(change: PeerAction) -> Entry:
    """The message entry of one peer change, validated (InvalidValueError before anything is sent)."""
    match change:
        case AddPeer(peer):
            nets = tuple(wireguard.check_peer(peer))
            msg = GenlPeer(
                peer.public_key.raw,
                WGPEER_F_REPLACE_ALLOWEDIPS,
                peer.endpoint,
                peer.persistent_keepalive,
                nets,
            )
            return _who("adding", peer.public_key, peer.node), msg
        case UpdatePeer():
            given = wireguard.check_update(change)
            ips = None if given is None else tuple(given)
            flags = WGPEER_F_UPDATE_ONLY | (WGPEER_F_REPLACE_ALLOWEDIPS if ips is not None else 0)
            msg = GenlPeer(change.public_key.raw, flags, change.endpoint, change.persistent_keepalive, ips)
            return _who("updating", change.public_key, change.node), msg
        case RemovePeer(key, node):
            wireguard.check_public_key(key)
            return _who("removing", key, node), GenlPeer(key.raw, WGPEER_F_REMOVE_ME)
    raise InvalidValueError(f"not a peer change: {type(change).__name__}")


def psk_entry(key: PublicKey, psk: bytes | None) -> Entry:
    """Set (None: clear) the preshared key of an existing peer, nothing else of it; never creates one."""
    wireguard.check_public_key(key)
    if psk is not None and len(psk) != PSK_SIZE:
        raise InvalidValueError(f"a preshared key must be {PSK_SIZE} bytes")
    msg = GenlPeer(key.raw, WGPEER_F_UPDATE_ONLY, preshared_key=psk or bytes(PSK_SIZE))
    return _who("setting the preshared key of", key, ""), msg


async def send(client: PeerSender, name: str, entries: Sequence[Entry]) -> None:
    """Send every entry; BatchError naming each peer the kernel refused, after the others are applied."""
    failed: list[tuple[str, int]] = []
    for run in _runs(entries):
        failed += await _send_run(client, name, run)
    if failed:
        raise batch_failure(_named(failed, name))


async def _send_run(client: PeerSender, name: str, run: Sequence[Entry]) -> list[tuple[str, int]]:
    peers = [peer for _, peer in run]
    messages = pack(peers, name)
    codes = await client.set_peers(name, [[part for _, part in m] for m in messages])
    refused: dict[int, int] = {}  # peer index -> errno
    again: set[int] = set()  # peers of refused messages of several peers: sent again, one per message
    for message, code in zip(messages, codes, strict=True):
        indices = {i for i, _ in message}
        if code and len(indices) == 1:
            refused.setdefault(indices.pop(), code)
        elif code:
            again |= indices
    if again:
        alone = [(i, pack([peers[i]], name)) for i in sorted(again)]
        codes = await client.set_peers(name, [[part for _, part in m] for _, ms in alone for m in ms])
        at = 0
        for i, ms in alone:
            refused.pop(i, None)
            code = next((c for c in codes[at : at + len(ms)] if c), 0)
            at += len(ms)
            if code:
                refused[i] = code
    return [(f"{run[i][0]} on {name}", refused[i]) for i in sorted(refused)]


def _runs(entries: Sequence[Entry]) -> list[list[Entry]]:
    """`entries` cut before each entry whose peer the current run already holds."""
    runs: list[list[Entry]] = [[]]
    seen: set[bytes] = set()
    for entry in entries:
        key = entry[1].public_key
        if key in seen:
            runs.append([])
            seen = set()
        runs[-1].append(entry)
        seen.add(key)
    return [run for run in runs if run]


def _named(failed: list[tuple[str, int]], name: str) -> list[tuple[str, int]]:
    if len(failed) <= NAMED:
        return failed
    rest = failed[NAMED:]
    code = next((c for _, c in rest if c not in TRANSIENT_ERRNOS), rest[0][1])
    return [*failed[:NAMED], (f"changing {len(rest)} more peers on {name}", code)]
