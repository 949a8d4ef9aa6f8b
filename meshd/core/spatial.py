"""Where each pod CIDR and outer address (underlay, endpoint) of a cluster's nodes lies, for finding a
node's clashes (meshd.core.cluster_index) by lookups instead of comparing it with every node. Pure."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from meshd.core.model import Node
from meshd.core.netset import NetKey, net_key
from meshd.core.overlaps import outer_addresses

T = TypeVar("T")
PointKey = tuple[int, int]  # (IP version, address)


@dataclass(slots=True)
class Spatial:
    """Pod CIDRs and outer addresses of the nodes that may clash, for finding a node's clashes."""

    nets: dict[NetKey, frozenset[str]] = field(default_factory=dict)  # pod CIDR -> who has it
    starts: list[tuple[NetKey, str]] = field(default_factory=list)  # sorted
    points: list[tuple[PointKey, str]] = field(default_factory=list)  # outer addresses, sorted
    lengths: dict[tuple[int, int], int] = field(default_factory=dict)  # (version, prefix length) -> how many

    def copy(self) -> Spatial:
        return Spatial(dict(self.nets), list(self.starts), list(self.points), dict(self.lengths))

    def add(self, node: Node) -> None:
        for net in node.pod_cidrs:
            key = net_key(net)
            self.nets[key] = self.nets.get(key, frozenset()) | {node.name}
            bisect.insort(self.starts, (key, node.name))
            length = (key[0], key[2])
            self.lengths[length] = self.lengths.get(length, 0) + 1
        for addr in outer_addresses(node):
            bisect.insort(self.points, ((addr.version, int(addr)), node.name))

    def remove(self, node: Node) -> None:
        for net in node.pod_cidrs:
            key = net_key(net)
            left = self.nets.get(key, frozenset()) - {node.name}
            if left:
                self.nets[key] = left
            else:
                self.nets.pop(key, None)
            _discard(self.starts, (key, node.name))
            length = (key[0], key[2])
            if self.lengths[length] > 1:
                self.lengths[length] -= 1
            else:
                del self.lengths[length]
        for addr in outer_addresses(node):
            _discard(self.points, ((addr.version, int(addr)), node.name))

    def clashing(self, node: Node) -> set[str]:
        """The other nodes whose pod CIDRs overlap node's or cover its outer addresses, or whose outer
        addresses lie in its pod CIDRs."""
        found: set[str] = set()
        for net in node.pod_cidrs:
            version, start, plen = net_key(net)
            found.update(*self._enclosing(version, start, plen))  # equal or larger: they contain it
            end = int(net.broadcast_address)
            lo = bisect.bisect_left(self.starts, ((version, start, plen + 1), ""))
            hi = bisect.bisect_right(self.starts, ((version, end, 1 << 8), ""))
            found.update(name for _, name in self.starts[lo:hi])  # smaller, inside it
            lo = bisect.bisect_left(self.points, ((version, start), ""))
            hi = bisect.bisect_right(self.points, ((version, end), "\U0010ffff"))
            found.update(name for _, name in self.points[lo:hi])
        for addr in outer_addresses(node):
            found.update(*self._enclosing(addr.version, int(addr), addr.max_prefixlen))
        found.discard(node.name)
        return found

    def _enclosing(self, version: int, start: int, plen: int) -> Iterable[frozenset[str]]:
        """Owners of the pod CIDRs that hold (version, start, plen): only the prefix lengths some pod CIDR
        has are looked up (a cluster has one or two), not all of 0..plen."""
        bits = 32 if version == 4 else 128
        for v, p in self.lengths:
            if v == version and p <= plen:
                owners = self.nets.get((v, start >> (bits - p) << (bits - p), p))
                if owners:
                    yield owners


def _discard(items: list[T], item: T) -> None:
    i = bisect.bisect_left(items, item)  # type: ignore[call-overload]
    if i < len(items) and items[i] == item:
        del items[i]
