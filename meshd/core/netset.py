"""Sets of IP networks that answer "does this network lie inside one of them?" in O(prefix length)
(at most 33 or 129 lookups), not by testing every member: a pass asks it of every foreign route; and the
peers' pod CIDRs, followed from snapshot to snapshot. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from meshd.core.model import IPNetwork, Node, NodeRecord
from meshd.core.moves import Moves

NetKey = tuple[int, int, int]
"""(IP version, first address as an integer, prefix length): equal networks have equal keys."""


def net_key(net: IPNetwork) -> NetKey:
    return (net.version, int(net.network_address), net.prefixlen)


def enclosing(version: int, start: int, plen: int) -> Iterator[NetKey]:
    """The keys of every network that holds (version, start, plen): its supernets and itself."""
    bits = 32 if version == 4 else 128
    for p in range(plen + 1):
        yield (version, start >> (bits - p) << (bits - p), p)


class NetworkSet:
    """A set of networks; `covers(dst)`: dst equals or lies inside a member."""

    __slots__ = ("_keys", "_nets")

    def __init__(self, nets: Iterable[IPNetwork] = ()) -> None:
        self._nets: set[IPNetwork] = set()
        self._keys: set[NetKey] = set()
        for net in nets:
            self.add(net)

    def add(self, net: IPNetwork) -> None:
        self._nets.add(net)
        self._keys.add(net_key(net))

    def discard(self, net: IPNetwork) -> None:
        if net in self._nets:
            self._nets.discard(net)
            self._keys.discard(net_key(net))

    def __contains__(self, net: object) -> bool:
        return net in self._nets

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self._nets)

    def __len__(self) -> int:
        return len(self._nets)

    def covers(self, dst: IPNetwork) -> bool:
        keys = self._keys
        return bool(keys) and any(k in keys for k in enclosing(*net_key(dst)))


class PeerNetworks:
    """The pod CIDRs of every node but `me`, followed from one snapshot's records to the next by identity
    (a datastore shares its unchanged decoded records): a change costs the networks of the records that
    came and went, not a rebuild. `networks` is kept in place; a network stays while any record has it."""

    __slots__ = ("_counts", "_moves", "me", "networks", "records")

    def __init__(self, me: str, moves: Moves) -> None:
        self.me = me
        self._moves = moves  # the agent's: what came and went
        self.networks = NetworkSet()
        self._counts: dict[IPNetwork, int] = {}
        self.records: tuple[NodeRecord, ...] = ()  # the last followed (held: their ids stay unique)

    def follow(self, records: tuple[NodeRecord, ...]) -> None:
        """`networks` now holds the pod CIDRs of `records` (ours left out)."""
        went, came = self._moves.moved(self.records, records)
        for gone in went:
            for net in self._nets(gone):
                left = self._counts[net] - 1
                if left:
                    self._counts[net] = left
                else:
                    del self._counts[net]
                    self.networks.discard(net)
        for record in came:
            for net in self._nets(record):
                self._counts[net] = self._counts.get(net, 0) + 1
                self.networks.add(net)
        self.records = records

    def _nets(self, record: NodeRecord) -> tuple[IPNetwork, ...]:
        return record.pod_cidrs if isinstance(record, Node) and record.name != self.me else ()
