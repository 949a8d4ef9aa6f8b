"""KeyedSets: an edit gives exactly the set a rebuild would, shares the set when nothing changed, and the
next edit of the set it made starts from the index it kept (no scan)."""

from __future__ import annotations

import random

from meshd.agent.keyed import KeyedSets
from meshd.core.moves import Moves
from tests.told import told_exactly


def _key(entry: tuple[str, int]) -> str:
    return entry[0]


def test_random_edits_equal_a_rebuild() -> None:
    moves = Moves()
    rng = random.Random(7)
    keyed: KeyedSets[str, tuple[str, int]] = KeyedSets(_key)
    current: frozenset[tuple[str, int]] = frozenset()
    for _ in range(300):
        edited = current if rng.random() < 0.7 else frozenset(list(current))  # equal, not it
        if rng.random() < 0.2:
            keyed.keep(
                edited if rng.random() < 0.5 else frozenset(rng.sample(sorted(current), len(current) // 2))
            )
        edit = keyed.edit(edited)
        model = {k: {e for e in current if e[0] == k} for k in {e[0] for e in current}}
        for _ in range(rng.randrange(4)):
            k = rng.choice("abcdef")
            held = tuple({(k, rng.randrange(3)) for _ in range(rng.randrange(3))})
            edit.set(k, held)
            model[k] = set(held)
        if rng.random() < 0.1:
            edit.discard_if(lambda e: e[1] == 0)
            model = {k: {e for e in v if e[1] != 0} for k, v in model.items()}
        result = edit.result(moves)
        assert result == frozenset(e for v in model.values() for e in v)
        assert result is edited or told_exactly(moves, edited, result)  # what the diff after a fold reads
        current = result


def test_an_edit_that_changes_nothing_keeps_the_set_and_the_next_uses_the_kept_index() -> None:
    moves = Moves()
    keyed: KeyedSets[str, tuple[str, int]] = KeyedSets(_key)
    start = frozenset({("a", 1), ("b", 2)})
    edit = keyed.edit(start)
    edit.set("a", (("a", 1),))
    assert edit.result(moves) is start
    edit = keyed.edit(start)
    edit.set("c", (("c", 3),))
    made = edit.result(moves)
    following = keyed.edit(made)
    assert following.index == {"a": (("a", 1),), "b": (("b", 2),), "c": (("c", 3),)}
    assert following.index is not edit.index  # a copy: the kept index is not changed under the set


def test_an_equal_set_that_is_not_the_last_one_edits_from_the_kept_index() -> None:
    moves = Moves()
    keyed: KeyedSets[str, tuple[str, int]] = KeyedSets(_key)
    edit = keyed.edit(frozenset({("a", 1)}))
    edit.set("b", (("b", 2),))
    made = edit.result(moves)
    older = frozenset({("a", 1), ("b", 2)})  # equal to `made`, another object (a view kept from before)
    assert older == made and older is not made
    following = keyed.edit(older)
    assert following.index == {"a": (("a", 1),), "b": (("b", 2),)}
    following.set("a", ())
    assert following.result(moves) == frozenset({("b", 2)})
    other = keyed.edit(frozenset({("c", 3)}))  # not equal: indexed from its own entries
    assert other.index == {"c": (("c", 3),)}


def test_a_kept_set_is_indexed_once_and_its_next_edit_starts_from_that_index() -> None:
    moves = Moves()
    keyed: KeyedSets[str, tuple[str, int]] = KeyedSets(_key)
    read = frozenset({("a", 1), ("a", 2), ("b", 2)})  # a set read whole
    keyed.keep(read)
    kept = keyed._last
    keyed.keep(read)  # the same set again: not indexed again
    assert keyed._last is kept
    edit = keyed.edit(read)
    assert {k: tuple(sorted(v)) for k, v in edit.index.items()} == {
        "a": (("a", 1), ("a", 2)),
        "b": (("b", 2),),
    }
    edit.set("a", ())
    assert edit.result(moves) == frozenset({("b", 2)})
