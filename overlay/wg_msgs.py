"""Kernel WireGuard's set-device messages as bytes: many peers per WG_CMD_SET_DEVICE message, messages
bounded in size the way `wg` bounds them (a peer whose allowed IPs do not fit continues in the next
message), encoded with struct rather than pyroute2's codec (which costs ~0.1 ms per peer: half a second
for 5000 peers, where these bytes take ~5 us each). The numbers (command, attributes, flags) are
pyroute2's; tests decode what is encoded here with pyroute2's `wgmsg`. Pure: no sockets, no I/O.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK
from pyroute2.netlink.generic import wireguard as wg

from meshd.core.model import Endpoint, IPNetwork
from meshd.rtnl_msgs import ATTR, message

WGPEER_F_REMOVE_ME: int = wg.WGPEER_F_REMOVE_ME
WGPEER_F_REPLACE_ALLOWEDIPS: int = wg.WGPEER_F_REPLACE_ALLOWEDIPS
WGPEER_F_UPDATE_ONLY: int = wg.WGPEER_F_UPDATE_ONLY
PSK_SIZE = 32
MESSAGE = 16 * 1024
"""Bytes per set-device message at most. The kernel takes any size up to the socket's send buffer, but a
nested attribute's length is 16 bits: the peers of one message must stay under 64 KiB."""
GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved
U16, U32 = struct.Struct("=H"), struct.Struct("=I")
SOCKADDR_IN = struct.Struct("=H2s4s8x")  # family, port (big-endian), address
SOCKADDR_IN6 = struct.Struct("=H2sI16sI")  # family, port (big-endian), flow info, address, scope id
KEY_ATTR = ATTR.size + 32
U32_ATTR = ATTR.size + 4
SMALL_ATTR = ATTR.size + 4  # a u8 or u16 attribute, padded to 4 bytes
NEST = ATTR.size
PEER_ATTRS = [entry[0] for entry in wg.wgmsg.wgdevice_peer.nla_map]
PUBLIC_KEY, PRESHARED_KEY, FLAGS, ENDPOINT, KEEPALIVE, ALLOWEDIPS = (
    PEER_ATTRS.index(f"WGPEER_A_{name}")
    for name in (
        "PUBLIC_KEY",
        "PRESHARED_KEY",
        "FLAGS",
        "ENDPOINT",
        "PERSISTENT_KEEPALIVE_INTERVAL",
        "ALLOWEDIPS",
    )
)


@dataclass(frozen=True, slots=True)
class GenlPeer:
    """One WGDEVICE_A_PEERS entry of a set-device message."""

    public_key: bytes
    flags: int = 0
    endpoint: Endpoint | None = None
    persistent_keepalive: int | None = None
    allowed_ips: tuple[IPNetwork, ...] | None = None
    preshared_key: bytes | None = None  # 32 bytes; all zeros clears it


def _attr(kind: int, value: bytes) -> bytes:
    raw = ATTR.pack(ATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _nest(kind: int, parts: Sequence[bytes]) -> bytes:
    body = b"".join(parts)
    return ATTR.pack(ATTR.size + len(body), kind | NLA_F_NESTED) + body


def _endpoint(endpoint: Endpoint) -> bytes:
    port = endpoint.port.to_bytes(2, "big")
    if isinstance(endpoint.host, ipaddress.IPv4Address):
        return SOCKADDR_IN.pack(socket.AF_INET, port, endpoint.host.packed)
    return SOCKADDR_IN6.pack(socket.AF_INET6, port, 0, endpoint.host.packed, 0)


def _allowed_ip(net: IPNetwork) -> bytes:
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return _nest(
        0,
        (
            _attr(wg.WGALLOWEDIP_A_FAMILY, U16.pack(family)),
            _attr(wg.WGALLOWEDIP_A_IPADDR, net.network_address.packed),
            _attr(wg.WGALLOWEDIP_A_CIDR_MASK, bytes((net.prefixlen,))),
        ),
    )


def encode_peer(peer: GenlPeer) -> bytes:
    attrs = [_attr(PUBLIC_KEY, peer.public_key), _attr(FLAGS, U32.pack(peer.flags))]
    if peer.endpoint is not None:
        attrs.append(_attr(ENDPOINT, _endpoint(peer.endpoint)))
    if peer.persistent_keepalive is not None:
        attrs.append(_attr(KEEPALIVE, U16.pack(peer.persistent_keepalive)))
    if peer.preshared_key is not None:
        attrs.append(_attr(PRESHARED_KEY, peer.preshared_key))
    if peer.allowed_ips:
        attrs.append(_nest(ALLOWEDIPS, [_allowed_ip(net) for net in peer.allowed_ips]))
    return _nest(0, attrs)


def ip_size(net: IPNetwork) -> int:
    return NEST + SMALL_ATTR + ATTR.size + (4 if net.version == 4 else 16) + SMALL_ATTR


def head_size(peer: GenlPeer) -> int:
    """The bytes of `peer` without its allowed IPs (with the empty nest that would hold them)."""
    size = NEST + KEY_ATTR + U32_ATTR
    if peer.endpoint is not None:
        size += ATTR.size + (SOCKADDR_IN.size if peer.endpoint.host.version == 4 else SOCKADDR_IN6.size)
    if peer.persistent_keepalive is not None:
        size += SMALL_ATTR
    if peer.preshared_key is not None:
        size += KEY_ATTR
    return size + (NEST if peer.allowed_ips else 0)


def overhead(ifname: str) -> int:
    """The bytes of a set-device message of device `ifname` holding no peer."""
    return 16 + GENLMSGHDR.size + len(_attr(wg.WGDEVICE_A_IFNAME, ifname.encode() + b"\0")) + NEST


Part = tuple[int, GenlPeer]
"""A peer (or a piece of one) as packed: (its index in the packed sequence, the message entry)."""


def pack(peers: Sequence[GenlPeer], ifname: str, limit: int = MESSAGE) -> list[list[Part]]:
    """The peers as set-device messages of at most `limit` bytes, in order. A peer whose allowed IPs do
    not fit continues in the next message as an update-only entry adding the rest (as `wg` does)."""
    messages: list[list[Part]] = [[]]
    room = budget = limit - overhead(ifname)
    for index, peer in enumerate(peers):
        for part, size in _pieces(peer, room, budget):
            if size > room:
                messages.append([])
                room = budget
            messages[-1].append((index, part))
            room -= size
    return [m for m in messages if m]


def _pieces(peer: GenlPeer, room: int, budget: int) -> Iterator[tuple[GenlPeer, int]]:
    """`peer` cut where its allowed IPs overflow: the first piece sized to `room` when its head and first
    allowed IP fit there (else to a fresh message's `budget`), each later one to `budget`."""
    ips = peer.allowed_ips or ()
    head = head_size(peer)
    if head + (ip_size(ips[0]) if ips else 0) > room:
        room = budget
    while True:
        taken, size = 0, head
        while taken < len(ips) and size + ip_size(ips[taken]) <= room:
            size += ip_size(ips[taken])
            taken += 1
        if taken == len(ips):
            yield peer, size
            return
        yield replace(peer, allowed_ips=ips[:taken]), size
        peer = GenlPeer(peer.public_key, WGPEER_F_UPDATE_ONLY, allowed_ips=ips[taken:])
        ips, head, room = ips[taken:], head_size(peer), budget


@dataclass(frozen=True, slots=True)
class SetPeers:
    """One WG_CMD_SET_DEVICE request for `ifname` carrying `peers`, for the genl family `family`."""

    family: int
    ifname: str
    peers: tuple[GenlPeer, ...]

    def encode(self, seq: int) -> bytes:
        body = (
            GENLMSGHDR.pack(wg.WG_CMD_SET_DEVICE, wg.WG_GENL_VERSION, 0)
            + _attr(wg.WGDEVICE_A_IFNAME, self.ifname.encode() + b"\0")
            + _nest(wg.WGDEVICE_A_PEERS, [encode_peer(p) for p in self.peers])
        )
        return message(self.family, NLM_F_ACK, body, seq)
