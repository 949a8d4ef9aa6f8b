"""Decoded node records in name order, kept from one snapshot to the next. The datastore says which names
changed (`touch`); the next `records` decodes and places only those and shares the rest, and the whole
tuple when nothing changed: a node added to 5000 costs one decode, not 5000 look-ups and a sort."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from meshd.core.model import NodeRecord
from meshd.core.moves import Moves

Obj = TypeVar("Obj")


class NamedRecords(Generic[Obj]):
    """`records(nodes)` is always `tuple(decode(name, obj) for name, obj in sorted(nodes.items()))`, given
    that every name whose object changed since the last call was touched. It tells which records went and
    came to `moves` (the agent's, meshd.core.moves), so `decode` must give each name records of its own (no
    object shared by two names)."""

    def __init__(
        self, decode: Callable[[str, Obj], NodeRecord], moves: Moves, agent: Callable[[Obj, NodeRecord], bool]
    ) -> None:
        self._decode = decode
        self._moves = moves
        self._agent = agent  # whether a node runs a meshd agent, from its object and record
        self._order: list[str] = []  # sorted
        self._by_name: dict[str, NodeRecord] = {}
        self._dirty: set[str] | None = None  # None: any name may have changed
        self._made: tuple[NodeRecord, ...] = ()
        self._agents: list[str] = []  # sorted
        self.agents_changed = 0
        """Moves each time a name joins or leaves `agents`, for those who follow them and not the records."""
        self._agents_seen: tuple[int, tuple[str, ...]] = (0, ())

    @property
    def agents(self) -> tuple[str, ...]:
        """The names, in order, of the last `records` whose node runs a meshd agent (`agent`)."""
        if self._agents_seen[0] != self.agents_changed:
            self._agents_seen = (self.agents_changed, tuple(self._agents))
        return self._agents_seen[1]

    def touch(self, name: str | None = None) -> None:
        """The object of `name` changed, came or went (None: any may have)."""
        if name is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.add(name)

    def records(self, nodes: Mapping[str, Obj]) -> tuple[NodeRecord, ...]:
        dirty, self._dirty = self._dirty, set()
        if dirty is None:
            self._order = sorted(nodes)
            self._by_name = {name: self._decode(name, nodes[name]) for name in self._order}
            agents, self._agents = (
                self._agents,
                [n for n in self._order if self._agent(nodes[n], self._by_name[n])],
            )
            self.agents_changed += agents != self._agents
        elif not dirty:
            return self._made
        last = self._made
        went: list[NodeRecord] = []
        came: list[NodeRecord] = []
        for name in dirty or ():
            old, obj = self._by_name.get(name), nodes.get(name)
            self._place(name, obj)
            new = self._by_name.get(name)
            self._follow_agent(name, obj is not None and new is not None and self._agent(obj, new))
            if old is not new:
                went.extend(() if old is None else (old,))
                came.extend(() if new is None else (new,))
        self._made = tuple(map(self._by_name.__getitem__, self._order))
        if dirty is not None:  # the records that went and came, for those who follow them
            self._moves.tell(last, self._made, went, came)
        return self._made

    def _place(self, name: str, obj: Obj | None) -> None:
        i = bisect_left(self._order, name)
        there = i < len(self._order) and self._order[i] == name
        if obj is None:
            if there:
                del self._order[i]
                del self._by_name[name]
            return
        if not there:
            self._order.insert(i, name)
        self._by_name[name] = self._decode(name, obj)

    def _follow_agent(self, name: str, now: bool) -> None:
        i = bisect_left(self._agents, name)
        if (i < len(self._agents) and self._agents[i] == name) == now:
            return
        if now:
            self._agents.insert(i, name)
        else:
            del self._agents[i]
        self.agents_changed += 1
