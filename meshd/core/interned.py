"""One shared object per IP address and network value. Pure (a cache).

The datastore's codec, the route and neighbour decoders and the UAPI parser each build address objects;
routed through here, equal values are the same object, so comparing what the planner wants with what the
kernel holds (sets of routes, peers, FDB and neighbour entries) stops at the identity check instead of
calling ipaddress's Python-level `__eq__`, and the agent keeps one copy of each value instead of one per
view. The table is cleared when it grows past LIMIT (values stay valid; only sharing is lost)."""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

LIMIT = 1 << 16
V = TypeVar("V", bound=IPv4Address | IPv6Address | IPv4Network | IPv6Network)
_VALUES: dict[object, object] = {}


def interned(value: V) -> V:
    """The shared object equal to `value` (`value` itself the first time)."""
    got = _VALUES.get(value)
    if got is None:
        if len(_VALUES) >= LIMIT:
            _VALUES.clear()
        _VALUES[value] = got = value
    return got  # type: ignore[return-value]


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_DOTTED = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(3[0-2]|[12][0-9]|[0-9]))?", re.ASCII)


def _dotted(text: str) -> tuple[int, int | None] | None:
    """A plain dotted-quad IPv4 address, or one with a /prefix, as (integer, prefix); None for anything
    else (which ipaddress then parses, or refuses, itself). Parsing thousands of node records is mostly
    ipaddress's Python-level octet parser; this accepts only what it accepts."""
    m = _DOTTED.fullmatch(text)
    if m is None:
        return None
    a, b, c, d, plen = m.groups()
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d), None if plen is None else int(plen)


def parse_address(text: str) -> IPv4Address | IPv6Address:
    """`ipaddress.ip_address(text)`, shared (`interned`); raises ValueError as it does."""
    fast = _dotted(text)
    if fast is not None and fast[1] is None:
        return interned(IPv4Address(fast[0]))
    return interned(ipaddress.ip_address(text))


def parse_ipv4(text: str) -> IPv4Address:
    """`ipaddress.IPv4Address(text)`, shared (`interned`); raises ValueError as it does."""
    fast = _dotted(text)
    if fast is not None and fast[1] is None:
        return interned(IPv4Address(fast[0]))
    return interned(IPv4Address(text))


def parse_network(text: str) -> IPv4Network | IPv6Network:
    """`ipaddress.ip_network(text, strict=True)`, shared (`interned`); raises ValueError as it does."""
    fast = _dotted(text)
    if fast is not None and fast[1] is not None:
        return interned(IPv4Network(fast))  # strict: host bits set raise ValueError
    return interned(ipaddress.ip_network(text, strict=True))
