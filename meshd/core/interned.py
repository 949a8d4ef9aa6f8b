"""One shared object per IP address and network value. Pure (a cache).

The datastore's codec, the route and neighbour decoders and the UAPI parser each build address objects;
routed through here, equal values are the same object, so comparing what the planner wants with what the
kernel holds (sets of routes, peers, FDB and neighbour entries) stops at the identity check instead of
calling ipaddress's Python-level `__eq__`, and the agent keeps one copy of each value instead of one per
view. The table is cleared when it grows past LIMIT (values stay valid; only sharing is lost)."""

from __future__ import annotations

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
