"""The per-key tables of a desired state from the pairs' parts: whole, or from the last tables after a
change. Pure: `retable(last, gone, came, parts)` always equals `tables(parts)` (the property tests in
tests/test_assembly_properties.py hold them equal, with random parts that share entries).

Each pair gives a part: its WireGuard peer, its FDB and neighbour entries and its pod routes. A part is
made once per decision and kept with it, so a plan that keeps a pair keeps these objects too (and the
diff that follows stops at identity). The tables are the union of the parts, the peers sorted by public
key. After a change, the parts of the pairs decided again (or gone) leave the last tables and the new
parts come in. Two pairs may give one entry, which a set holds once: the tables keep how many entries
the parts gave each set, and a set that holds fewer after the change (it lost an entry another pair
still gives) is made again from all the parts. A peer that would land next to one with the same key
(where only the whole sort knows the order) makes the peers again too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

from meshd.core.moves import Moves, exactly
from meshd.core.state import FdbEntry, NeighborEntry, PeerSpec, Problem, Route

PEER_ORDER = attrgetter("public_key.raw")
"""The peers' order: by public key (a PublicKey orders by its raw bytes; bytes compare in C)."""
SETS = ("fdb", "neighbors", "routes")


@dataclass(frozen=True, slots=True)
class Part:
    """What one pair adds to the desired state."""

    peers: tuple[PeerSpec, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    neighbors: tuple[NeighborEntry, ...] = ()
    routes: tuple[Route, ...] = ()
    problems: tuple[Problem, ...] = ()  # pod CIDRs of the pair its transport cannot route


@dataclass(frozen=True, slots=True)
class Tables:
    """The union of the parts, and how many entries the parts gave each set (repeats included)."""

    peers: tuple[PeerSpec, ...] = ()  # sorted by public key; equal keys in the parts' order
    fdb: frozenset[FdbEntry] = frozenset()
    neighbors: frozenset[NeighborEntry] = frozenset()
    routes: frozenset[Route] = frozenset()
    given: tuple[int, ...] = (0, 0, 0)  # per name of SETS


NO_TABLES = Tables()


def _gathered(parts: Iterable[Part], name: str) -> list[Any]:
    return list(chain.from_iterable(map(attrgetter(name), parts)))


def tables(parts: Sequence[Part]) -> Tables:
    """The tables of all the parts."""
    peers = tuple(sorted(_gathered(parts, "peers"), key=PEER_ORDER))
    gathered = [_gathered(parts, name) for name in SETS]
    fdb, neighbors, routes = (frozenset(entries) for entries in gathered)
    return Tables(peers, fdb, neighbors, routes, tuple(map(len, gathered)))


def retable(
    last: Tables, gone: Sequence[Part], came: Sequence[Part], parts: Sequence[Part], moves: Moves
) -> Tables:
    """The tables of `parts`, which are the parts of `last` without `gone` and with `came`; what each
    table lost and gained is told to `moves` (the agent's)."""
    peers = _repeers(last.peers, _gathered(gone, "peers"), _gathered(came, "peers"), moves)
    if peers is None:
        return tables(parts)
    sets: list[frozenset[Any]] = []
    given: list[int] = []
    for i, name in enumerate(SETS):
        old: frozenset[Any] = getattr(last, name)
        out, into = _gathered(gone, name), _gathered(came, name)
        new = old if not out and not into else (old - frozenset(out)) | frozenset(into)
        count = last.given[i] - len(out) + len(into)
        if len(new) != count:  # an entry left that another part still gives, or two parts give one
            return tables(parts)
        sets.append(new)
        given.append(count)
        if new is not old:  # what left is what the parts that left gave (each entry had one giver)
            moves.tell(old, new, tuple(frozenset(out) - frozenset(into)), tuple(frozenset(into) - old))
    fdb, neighbors, routes = sets
    return Tables(peers, fdb, neighbors, routes, tuple(given))


def _repeers(
    peers: tuple[PeerSpec, ...], out: list[PeerSpec], into: list[PeerSpec], moves: Moves
) -> tuple[PeerSpec, ...] | None:
    """`peers` without `out` (found by identity) and with `into` in place; None when an entry of `out` is
    not there or one of `into` meets an equal key."""
    if not out and not into:
        return peers
    result = list(peers)
    for spec in out:
        i = _find(result, spec)
        if i is None:
            return None
        del result[i]
    for spec in into:
        key = PEER_ORDER(spec)
        i = bisect_left(result, key, key=PEER_ORDER)
        if i < len(result) and PEER_ORDER(result[i]) == key:
            return None
        result.insert(i, spec)
    made = tuple(result)
    went, came = exactly(out, into)  # `into` met no equal key: none of them was there before
    moves.tell(peers, made, [spec for spec in went if _find(result, spec) is None], came)
    return made


def _find(peers: list[PeerSpec], spec: PeerSpec) -> int | None:
    """Where `spec` itself is in `peers` (sorted by key), or None."""
    key = PEER_ORDER(spec)
    i = bisect_left(peers, key, key=PEER_ORDER)
    while i < len(peers) and peers[i] is not spec and PEER_ORDER(peers[i]) == key:
        i += 1
    return i if i < len(peers) and peers[i] is spec else None
