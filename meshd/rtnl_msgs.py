"""rtnetlink messages as bytes: the few meshd writes in batches (routes, neighbour and FDB entries) and the
few it reads from dumps and events (routes, neighbours, links), with struct rather than pyroute2's codec.

Decoding a route or neighbour here costs a few microseconds where a general decoder costs about half a
millisecond, which matters when the kernel holds thousands of them. The numbers (message types, flags,
attribute types) are pyroute2's. Pure: no sockets, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    rt_type,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, rtmsg

from meshd.core.interned import interned
from meshd.core.model import IPAddress, IPNetwork

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
ATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")
NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: length, flags, hops, ifindex


def _nla(msg: Any, name: str) -> int:
    """The type number of attribute `name` of a pyroute2 message class (its nla_map lists them in order)."""
    return [entry[0] for entry in msg.nla_map].index(name)


RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = (
    _nla(rtmsg, f"RTA_{name}") for name in ("DST", "OIF", "GATEWAY", "PRIORITY", "MULTIPATH", "TABLE")
)
NDA_DST, NDA_LLADDR = _nla(ndmsg, "NDA_DST"), _nla(ndmsg, "NDA_LLADDR")
IFLA_IFNAME = _nla(ifinfmsg, "IFLA_IFNAME")
RTN_UNICAST: int = rt_type["unicast"]
RTN_UNREACHABLE: int = rt_type["unreachable"]

VERBS = {
    "add": NLM_F_CREATE | NLM_F_EXCL,
    "replace": NLM_F_CREATE | NLM_F_REPLACE,
    "del": 0,
}


def _attr(kind: int, value: bytes) -> bytes:
    raw = ATTR.pack(ATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body


def _family(addr: IPAddress | IPNetwork) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One route add, replace or delete for the route to `dst` in `table` carrying `protocol`."""

    verb: str
    dst: IPNetwork
    oif: int | None
    table: int
    protocol: int
    gateway: IPAddress | None = None
    flags: int = 0  # rtm_flags, e.g. RTNH_F_ONLINK
    kind: int = RTN_UNICAST  # RTN_UNREACHABLE: no device (a guard)
    priority: int | None = None  # the metric

    def encode(self, seq: int) -> bytes:
        scope = RT_SCOPE_LINK if self.gateway is None and self.kind == RTN_UNICAST else RT_SCOPE_UNIVERSE
        scope = RT_SCOPE_NOWHERE if self.verb == "del" else scope  # NOWHERE in a delete: any scope
        head = RTMSG.pack(
            _family(self.dst), self.dst.prefixlen, 0, 0, self.table if self.table < 256 else 252, self.protocol, scope,
            self.kind, self.flags,
        )  # fmt: skip
        attrs = _attr(RTA_DST, self.dst.network_address.packed) + _attr(RTA_TABLE, U32.pack(self.table))
        if self.oif is not None:
            attrs += _attr(RTA_OIF, U32.pack(self.oif))
        if self.gateway is not None:
            attrs += _attr(RTA_GATEWAY, self.gateway.packed)
        if self.priority is not None:
            attrs += _attr(RTA_PRIORITY, U32.pack(self.priority))
        kind = RTM_DELROUTE if self.verb == "del" else RTM_NEWROUTE
        return message(kind, NLM_F_ACK | VERBS[self.verb], head + attrs, seq)


@dataclass(frozen=True, slots=True)
class NeighRequest:
    """One neighbour (family AF_INET/AF_INET6) or FDB (family AF_BRIDGE) entry replace or delete."""

    verb: str
    family: int
    ifindex: int
    dst: IPAddress
    mac: str
    state: int
    flags: int = 0

    def encode(self, seq: int) -> bytes:
        head = NDMSG.pack(self.family, self.ifindex, self.state, self.flags, 0)
        attrs = _attr(NDA_DST, self.dst.packed) + _attr(NDA_LLADDR, bytes.fromhex(self.mac.replace(":", "")))
        kind = RTM_DELNEIGH if self.verb == "del" else RTM_NEWNEIGH
        return message(kind, NLM_F_ACK | VERBS[self.verb], head + attrs, seq)


def split(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, sequence, payload) of each netlink message in `data`."""
    view, offset = memoryview(data), 0
    while offset + HEADER.size <= len(data):
        length, kind, flags, seq, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            break
        yield kind, flags, seq, view[offset + HEADER.size : offset + length]
        offset += (length + 3) & ~3


def attributes(payload: memoryview, offset: int) -> dict[int, memoryview]:
    found: dict[int, memoryview] = {}
    while offset + ATTR.size <= len(payload):
        length, kind = ATTR.unpack_from(payload, offset)
        if length < ATTR.size:
            break
        found[kind & 0x3FFF] = payload[offset + ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _address(raw: memoryview | None) -> IPAddress | None:
    return interned(ipaddress.ip_address(bytes(raw))) if raw is not None and len(raw) in (4, 16) else None


@dataclass(frozen=True, slots=True)
class RouteMsg:
    dst: IPNetwork
    table: int
    protocol: int
    kind: int  # RTN_UNICAST, RTN_UNREACHABLE, ...
    flags: int
    oif: int | None
    gateway: IPAddress | None
    priority: int | None


DECODED_ROUTES = 1 << 15


def decode_route(payload: memoryview) -> RouteMsg | None:
    """The route a message describes (None: not IPv4 or IPv6). Every full read dumps the same routes
    again: a message seen before (the same bytes) gives the same decoded value, shared, without decoding
    it again; and equal routes compare at the identity check."""
    return _decode_route(bytes(payload))


@functools.lru_cache(maxsize=DECODED_ROUTES)
def _decode_route(raw: bytes) -> RouteMsg | None:
    payload = memoryview(raw)
    family, dst_len, _, _, table, proto, _, kind, flags = RTMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = attributes(payload, RTMSG.size)
    size = 4 if family == socket.AF_INET else 16
    raw_dst = bytes(attrs[RTA_DST]) if RTA_DST in attrs else b"\0" * size
    oif = U32.unpack(attrs[RTA_OIF])[0] if RTA_OIF in attrs else None
    gateway = _address(attrs.get(RTA_GATEWAY))
    if oif is None and RTA_MULTIPATH in attrs:  # a multipath route: named by its first hop
        hop = attrs[RTA_MULTIPATH]
        length, _, _, oif = NEXTHOP.unpack_from(hop)
        gateway = _address(attributes(hop[:length], NEXTHOP.size).get(RTA_GATEWAY))
    return RouteMsg(
        dst=interned(ipaddress.ip_network((raw_dst, dst_len))),
        table=U32.unpack(attrs[RTA_TABLE])[0] if RTA_TABLE in attrs else table,
        protocol=proto,
        kind=kind,
        flags=flags,
        oif=oif,
        gateway=gateway,
        priority=U32.unpack(attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else None,
    )


@dataclass(frozen=True, slots=True)
class NeighMsg:
    family: int
    ifindex: int
    state: int
    dst: IPAddress | None
    mac: str | None  # lower case, colon separated


def neigh_header(payload: memoryview) -> tuple[int, int, int]:
    """(family, ifindex, state) of a neighbour message: enough to skip the ones of other links cheaply."""
    family, ifindex, state, _, _ = NDMSG.unpack_from(payload)
    return family, ifindex, state


def decode_neigh(payload: memoryview) -> NeighMsg:
    family, ifindex, state = neigh_header(payload)
    attrs = attributes(payload, NDMSG.size)
    lladdr = attrs.get(NDA_LLADDR)
    mac = bytes(lladdr).hex(":") if lladdr is not None and len(lladdr) == 6 else None
    return NeighMsg(family, ifindex, state, _address(attrs.get(NDA_DST)), mac)


def decode_link(payload: memoryview) -> tuple[int, str]:
    """(index, name) of an RTM_NEWLINK/RTM_DELLINK message."""
    _, _, index, _, _ = IFINFOMSG.unpack_from(payload)
    name = attributes(payload, IFINFOMSG.size).get(IFLA_IFNAME)
    return index, bytes(name).rstrip(b"\0").decode() if name is not None else ""


def link_flags(payload: memoryview) -> int:
    """The IFF_* flags of an RTM_NEWLINK/RTM_DELLINK message."""
    return int(IFINFOMSG.unpack_from(payload)[3])


def decode_addr(payload: memoryview) -> tuple[int, int]:
    """(link index, scope) of an RTM_NEWADDR/RTM_DELADDR message."""
    _, _, _, scope, index = IFADDRMSG.unpack_from(payload)
    return index, scope


def dump_request(kind: int, family: int, seq: int) -> bytes:
    """A dump of every `kind` (RTM_GETROUTE, RTM_GETNEIGH, RTM_GETLINK) object of `family`."""
    bodies = {
        RTM_GETROUTE: RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0),
        RTM_GETNEIGH: NDMSG.pack(family, 0, 0, 0, 0),
        RTM_GETLINK: IFINFOMSG.pack(family, 0, 0, 0, 0),
    }
    body = bodies[kind]
    return message(kind, NLM_F_DUMP, body, seq)
