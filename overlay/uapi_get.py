"""Parsing a wireguard-go UAPI `get=1` reply into a WireGuardReading. Pure, no I/O.

Values are parsed once and shared (every resync reads the same peers again), and with a per-device memo
a peer whose lines are unchanged since the last read is that read's object. Never the private key: it is
reduced to its public half, and a preshared key to whether there is one.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from keys.values import PrivateKey, PublicKey
from meshd.core.interned import interned
from meshd.core.model import Endpoint, IPNetwork
from meshd.core.state import ObservedPeer, WireGuardReading
from overlay.uapi import UapiError, UapiProtocolError, errno_of, pairs_of


@dataclass(slots=True)
class _PeerFields:
    public_key: PublicKey
    endpoint: Endpoint | None = None
    allowed_ips: frozenset[IPNetwork] = frozenset()
    keepalive: int = 0
    handshake_sec: int = 0
    handshake_nsec: int = 0
    rx: int = 0
    tx: int = 0
    psk: bool = False

    def observed(self) -> ObservedPeer:
        handshake = None
        if self.handshake_sec or self.handshake_nsec:
            handshake = self.handshake_sec + self.handshake_nsec / 1e9
        return ObservedPeer(
            public_key=self.public_key,
            endpoint=self.endpoint,
            allowed_ips=self.allowed_ips,
            persistent_keepalive=self.keepalive,
            last_handshake=handshake,
            rx_bytes=self.rx,
            tx_bytes=self.tx,
            has_psk=self.psk,
        )


# Every resync reads the same peers again: their values are parsed once and the parsed (immutable) values
# shared, which also makes the next read compare equal to the last one quickly. Never the private key.
PARSED_VALUES = 1 << 14


@functools.lru_cache(maxsize=PARSED_VALUES)
def _public_key(value: str) -> PublicKey:
    return PublicKey.from_hex(value)


@functools.lru_cache(maxsize=PARSED_VALUES)
def _network(value: str) -> IPNetwork:
    return interned(ipaddress.ip_network(value, strict=False))


@functools.lru_cache(maxsize=PARSED_VALUES)
def _parse_endpoint(value: str) -> Endpoint | None:
    """wireguard-go may show a link-local v6 endpoint with a zone (`[fe80::1%eth0]:p`): not ours, None."""
    try:
        return Endpoint.parse(value)
    except ValueError:
        return None


def _apply_peer_field(peer: _PeerFields, key: str, value: str) -> None:
    match key:
        case "endpoint":
            peer.endpoint = _parse_endpoint(value)
        case "allowed_ip":
            peer.allowed_ips = peer.allowed_ips | {_network(value)}
        case "persistent_keepalive_interval":
            peer.keepalive = int(value)
        case "last_handshake_time_sec":
            peer.handshake_sec = int(value)
        case "last_handshake_time_nsec":
            peer.handshake_nsec = int(value)
        case "rx_bytes":
            peer.rx = int(value)
        case "tx_bytes":
            peer.tx = int(value)
        case "preshared_key":
            peer.psk = value.strip("0") != ""  # only whether there is one: the value goes no further
        case _:
            pass  # protocol_version: not ours to compare


PeerMemo = dict[str, ObservedPeer]
"""A device's peers as its last read parsed them, by their reply text (the PSK line only as 0 or 1)."""

PEER_START, PSK_LINE = "\npublic_key=", "\npreshared_key="


def parse_get(reply: str, memo: PeerMemo | None = None) -> WireGuardReading:
    """Parse a `get=1` reply (raises UapiError for a non-zero errno); peers in public-key order, so that two
    reads of an unchanged device are equal. With `memo` (one per device, kept by
    the caller), a peer whose lines are as the last read left them is the object that read made: an idle
    resync parses nothing again and its comparison with the last view stops at identity."""
    body = reply.rstrip("\n")
    code = errno_of(pairs_of(body[body.rfind("\n") + 1 :]))  # the last line
    if code != 0:
        raise UapiError("reading the device", code)
    head, *blocks = ("\n" + reply[: reply.rfind("errno=")].rstrip("\n")).split(PEER_START)
    public_key, listen_port = _device_fields(head)
    seen: PeerMemo = {}
    for block in blocks:
        text = _without_psk_value(block)
        seen[text] = (memo or {}).get(text) or _parse_peer(block)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    peers = sorted(seen.values(), key=_by_key)  # wireguard-go lists them in Go map order: random
    return WireGuardReading(public_key, listen_port, tuple(peers))


def _by_key(peer: ObservedPeer) -> bytes:
    return peer.public_key.raw


def _device_fields(head: str) -> tuple[PublicKey | None, int]:
    public_key: PublicKey | None = None
    listen_port = 0
    for key, value in pairs_of(head):
        try:
            if key == "private_key":
                raw = bytes.fromhex(value)
                public_key = PrivateKey(raw).public_key() if any(raw) else None
            elif key == "listen_port":
                listen_port = int(value)
        except ValueError:
            # The value may be the private key: name only the field.
            raise UapiProtocolError(f"UAPI reply has a malformed {key!r} value") from None
    return public_key, listen_port


def _parse_peer(block: str) -> ObservedPeer:
    """One peer's lines, its `public_key=` taken off."""
    (name, key), *fields = pairs_of("public_key=" + block)
    try:
        peer = _PeerFields(_public_key(key))
        for name, value in fields:
            _apply_peer_field(peer, name, value)
    except ValueError:
        raise UapiProtocolError(f"UAPI reply has a malformed {name!r} value") from None
    return peer.observed()


def _without_psk_value(block: str) -> str:
    """A peer's text with its preshared key reduced to whether it has one: the memo never holds a secret."""
    start = block.find(PSK_LINE)
    if start < 0:
        return block
    value = start + len(PSK_LINE)
    end = block.find("\n", value)
    end = len(block) if end < 0 else end
    return f"{block[:value]}{int(block[value:end].strip('0') != '')}{block[end:]}"
