"""For the producers' property tests: what a producer told of the change it made (meshd.core.moves) is
exactly what a scan of both versions finds."""

from __future__ import annotations

from typing import Any

from meshd.core.moves import Moves, scan_changed, scan_moved


def told_exactly(
    moves: Moves, old: tuple[Any, ...] | frozenset[Any], new: tuple[Any, ...] | frozenset[Any]
) -> bool:
    """The change from `old` to `new` was told to `moves`, and it is what a scan finds (tuples: the same
    entries by identity; frozensets: by value)."""
    found = moves.told(old, new)
    if found is None:
        return False
    if isinstance(old, frozenset) and isinstance(new, frozenset):
        went, came = scan_changed(old, new)
        return (set(found[0]), set(found[1])) == (set(went), set(came))
    assert isinstance(old, tuple) and isinstance(new, tuple)
    went_ids, came_ids = (set(map(id, group)) for group in scan_moved(old, new))
    return ({id(x) for x in found[0]}, {id(x) for x in found[1]}) == (went_ids, came_ids)
