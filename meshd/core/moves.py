"""What changed between two versions of a table, found once per pair of versions and shared by every
consumer. `Moves` is one agent's memo of it (built by the agent's wiring and handed to each producer and
follower); the scans are pure functions of their arguments.

A pass hands the same tables to several followers (the datastore's records to the foreign-route watch,
the conflict index and the PSK layer; the planner's decisions and peers to the diff, the metrics and the
PSK layer), each of which must learn what came and went since the version it saw last. Finding it costs a
scan of both versions (5000 entries at 5000 nodes); here it is found once. A producer that knows what it
changed (the datastore touched one name, the planner decided one pair again) says so with `tell`, and no
one scans at all. What a producer tells must be exactly what the scan would find (tests/test_moves.py
and the producers' property tests hold them equal).

A tuple's entries are told apart by identity (producers share unchanged entries between versions), a
frozenset's by value. The memo holds both versions of each pair it remembers, so their ids stay unique.
It remembers the last two steps of each table (three versions): a follower one version behind gets the
step, one two behind (a pass's followers when the datastore moved on during the last pass; the PSK
layer, which reads the datastore after the pass) follows the two through the version between. Once a
table moves on, the step into the version before the last is dropped, and with it the old version.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=Collection[Any])
LIMIT = 64  # pairs remembered at most (a pass follows about ten tables, two steps each are kept)

Moved = tuple[Sequence[Any], Sequence[Any]]
"""What went (in the old version, not in the new) and what came (in the new, not in the old)."""
Key = tuple[int, int]


class Moves:
    """One agent's memo of what changed between versions of its tables (not shared between agents)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._memo: dict[Key, tuple[object, object, Moved]] = {}
        self._into: dict[int, list[Key]] = {}  # id of a version -> the remembered steps into it

    def __len__(self) -> int:
        return len(self._memo)

    def tell(self, old: Collection[T], new: Collection[T], went: Sequence[T], came: Sequence[T]) -> None:
        """A producer made `new` from `old`, and `went`/`came` are exactly what `moved` (a tuple) or
        `changed` (a frozenset) would find between them."""
        if old is new:
            return
        for step in list(self._into.get(id(old), ())):  # `old` is followed: what led to the one before goes
            for gone in list(self._into.get(id(self._memo[step][0]), ())):
                self._drop(gone)
        key = (id(old), id(new))
        self._drop(key)
        self._memo[key] = (old, new, (went, came))
        self._into.setdefault(id(new), []).append(key)
        while len(self._memo) > self.limit:
            self._drop(next(iter(self._memo)))

    def told(self, old: object, new: object) -> Moved | None:
        """What was told or found between these two versions, if it is remembered."""
        held = self._memo.get((id(old), id(new)))
        return held[2] if held is not None and held[0] is old and held[1] is new else None

    def moved(self, old: tuple[T, ...], new: tuple[T, ...]) -> tuple[Sequence[T], Sequence[T]]:
        """The entries of `old` that are not in `new` and those of `new` not in `old`, by identity (an
        entry held twice counts once)."""
        return self._remembered(old, new, scan_moved)

    def changed(self, old: frozenset[T], new: frozenset[T]) -> tuple[Sequence[T], Sequence[T]]:
        """The entries of `old` not in `new` and those of `new` not in `old`, by value."""
        return self._remembered(old, new, scan_changed)

    def _remembered(self, old: C, new: C, scan: Callable[[C, C], Moved]) -> Moved:
        if old is new:
            return (), ()
        found = self.told(old, new) or self.through(old, new)
        if found is None:
            found = scan(old, new)
            self.tell(old, new, *found)
        return found

    def through(self, old: Collection[Any], new: Collection[Any]) -> Moved | None:
        """The change from `old` to `new` from two remembered ones through a version between them (a
        follower that missed a version: the PSK layer reads the datastore after the pass, which may have
        moved on meanwhile)."""
        for step in self._into.get(id(new), ()):
            mid, second = self._memo[step][0], self._memo[step][2]
            first = self.told(old, mid)
            if first is not None:
                key = _value if isinstance(old, frozenset) else id
                found = (_without(first[0], second[1], key) + _without(second[0], first[1], key),
                         _without(first[1], second[0], key) + _without(second[1], first[0], key))  # fmt: skip
                self.tell(old, new, *found)
                return found
        return None

    def _drop(self, key: Key) -> None:
        held = self._memo.pop(key, None)
        if held is not None:
            steps = self._into[id(held[1])]
            steps.remove(key)
            if not steps:
                del self._into[id(held[1])]


def exactly(went: Sequence[T], came: Sequence[T]) -> tuple[list[T], list[T]]:
    """`went` and `came` without the entries in both (one that left and came back stayed)."""
    out, into = set(map(id, went)), set(map(id, came))
    return [x for x in went if id(x) not in into], [x for x in came if id(x) not in out]


def _value(entry: object) -> object:
    return entry


def _without(entries: Sequence[T], taken: Sequence[T], key: Callable[[T], object]) -> list[T]:
    drop = set(map(key, taken))
    return [x for x in entries if key(x) not in drop]


def scan_moved(old: tuple[T, ...], new: tuple[T, ...]) -> tuple[list[T], list[T]]:
    """`moved`, found by scanning both versions."""
    before = dict(zip(map(id, old), old, strict=True))
    after = dict(zip(map(id, new), new, strict=True))
    return [before[i] for i in before.keys() - after.keys()], [after[i] for i in after.keys() - before.keys()]


def scan_changed(old: frozenset[T], new: frozenset[T]) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """`changed`, found by comparing both versions."""
    both = old ^ new
    came = both & new
    return tuple(both - came), tuple(came)
