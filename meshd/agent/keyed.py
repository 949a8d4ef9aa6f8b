"""A set of kernel entries edited by key, with the index by key carried from one edit to the next: folding a
few notifications into a set of thousands costs a few set operations (a frozenset keeps its entries'
hashes), not a rebuild of the set and of its index."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshd.core.moves import Moves

K = TypeVar("K", bound=Hashable)
E = TypeVar("E", bound=Hashable)


@dataclass
class KeyedSets(Generic[K, E]):
    """Makes `Edit`s of sets of entries keyed by `key`; remembers the last set an edit made, and its index."""

    key: Callable[[E], K]
    _last: tuple[frozenset[E], dict[K, tuple[E, ...]]] | None = None

    def edit(self, entries: frozenset[E]) -> Edit[K, E]:
        """An edit of `entries`. The last set's index serves for an equal set too (a pass may keep an
        older view equal to the last fold's: its entries are mostly the same objects, so comparing the
        sets costs a fraction of indexing one)."""
        last = self._last
        if last is not None and (last[0] is entries or last[0] == entries):
            index = dict(last[1])  # a copy: the index of the set the last edit made stays as it was
        else:
            index = self._index(entries)
        return Edit(self, entries, index)

    def keep(self, entries: frozenset[E]) -> None:
        """Index `entries` now, unless the last set is it: a set read whole (thousands of entries) is
        indexed once it was acted on, not by the first edit, which a change waits for."""
        if self._last is None or self._last[0] is not entries:
            self._last = (entries, self._index(entries))

    def _index(self, entries: frozenset[E]) -> dict[K, tuple[E, ...]]:
        index: dict[K, tuple[E, ...]] = {}
        for entry in entries:
            k = self.key(entry)
            index[k] = (*index.get(k, ()), entry)
        return index


@dataclass
class Edit(Generic[K, E]):
    """One edit of `entries`: set what each touched key holds, then take the `result`."""

    owner: KeyedSets[K, E]
    entries: frozenset[E]
    index: dict[K, tuple[E, ...]]
    _added: set[E] = field(default_factory=set)
    _removed: set[E] = field(default_factory=set)

    def get(self, k: K) -> tuple[E, ...]:
        return self.index.get(k, ())

    def discard_if(self, gone: Callable[[E], bool]) -> None:
        """Every entry for which `gone` is true goes (a scan of every entry: for rare events)."""
        for k, held in list(self.index.items()):
            if any(gone(e) for e in held):
                self.set(k, tuple(e for e in held if not gone(e)))

    def set(self, k: K, held: tuple[E, ...]) -> None:
        """The entries with key `k` are now exactly `held`."""
        old = self.index.get(k, ())
        for entry in old:
            if entry not in held:
                self._added.discard(entry)
                self._removed.add(entry)
        for entry in held:
            if entry not in old:
                self._removed.discard(entry)
                self._added.add(entry)
        if held:
            self.index[k] = held
        else:
            self.index.pop(k, None)

    def result(self, moves: Moves) -> frozenset[E]:
        """The edited set (`entries` itself when nothing changed); its index is kept for the next edit.
        What went and came is told to `moves` (the agent's), for the diff after."""
        old = self.entries
        if not self._added and not self._removed:
            new = old
        else:
            new = (old - self._removed) | self._added
            went = tuple(e for e in self._removed if e in old)
            moves.tell(old, new, went, tuple(e for e in self._added if e not in old))
        self.owner._last = (new, self.index)
        return new
