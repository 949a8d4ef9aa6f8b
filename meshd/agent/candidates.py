"""Which agents try for the MeshConfig-status Lease every round: the `CANDIDATES` nodes whose names hash
lowest (sha256). Every agent ranks the same node list the same way, so they agree without talking; the
others only look at the Lease now and then (meshd.agent.meshconfig_report)."""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CANDIDATES = 3


def name_rank(name: str) -> bytes:
    """A node's place in the candidate order: the same on every agent, whatever the process or platform."""
    return hashlib.sha256(name.encode()).digest()


def lowest_ranked(names: Iterable[str], k: int = CANDIDATES) -> frozenset[str]:
    """The `k` names that rank lowest (all of them when there are `k` or fewer)."""
    return frozenset(heapq.nsmallest(k, names, key=name_rank))


@runtime_checkable
class NamedNodes(Protocol):
    """A datastore that follows the names of the nodes that run meshd (the Kubernetes one)."""

    @property
    def agent_names(self) -> tuple[int, Sequence[str]]:
        """A count that moves when names come or go, and the names in order."""


@dataclass
class Candidacy:
    """Whether `me` is a candidate, from the names of the nodes that run meshd: `names()` gives a count that
    moves when names come or go, and the names in order. They are ranked again only when that count moved.
    A node that runs no agent (left out by the DaemonSet's node selector) is never a candidate."""

    me: str
    names: Callable[[], tuple[int, Sequence[str]]]
    k: int = CANDIDATES
    _ranked_at: int | None = None
    _answer: bool = True

    def __call__(self) -> bool:
        changed, names = self.names()
        if changed != self._ranked_at:
            self._ranked_at, self._answer = changed, self._decide(names)
        return self._answer

    def _decide(self, names: Sequence[str]) -> bool:
        i = bisect_left(names, self.me)
        if i == len(names) or names[i] != self.me:
            return True  # not listed (yet): no rank to go by, so try every round as before
        return self.me in lowest_ranked(names, self.k)
