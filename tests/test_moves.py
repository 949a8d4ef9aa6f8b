"""What changed between two versions of a table (meshd.core.moves): found or told, it is what a scan of
both versions finds; what a producer told is handed out for exactly those two versions, not for equal
copies of them; each agent's Moves is its own; and a Moves keeps only the last versions of a table."""

from __future__ import annotations

import gc
import itertools
import random
import weakref

from meshd.core.moves import Moves, exactly, scan_changed, scan_moved
from tests.told import told_exactly


class Entry:
    """Compares by identity, as the planner's and the datastore's shared entries are told apart."""

    def __init__(self, n: int) -> None:
        self.n = n


def _tell(moves: Moves, old: tuple[Entry, ...], new: tuple[Entry, ...]) -> None:
    moves.tell(old, new, *scan_moved(old, new))


def test_moved_and_changed_are_what_a_scan_finds_after_any_edits() -> None:
    moves = Moves()
    for seed in range(200):
        rng = random.Random(seed)
        pool = [Entry(i) for i in range(12)]
        old = tuple(rng.sample(pool, rng.randrange(8)))
        new = tuple(rng.sample(pool, rng.randrange(8)))
        went, came = moves.moved(old, new)
        assert {id(x) for x in went} == {id(x) for x in old} - {id(x) for x in new}
        assert {id(x) for x in came} == {id(x) for x in new} - {id(x) for x in old}
        assert old is new or told_exactly(moves, old, new)  # remembered for the next follower
        a, b = frozenset(rng.sample(range(12), 5)), frozenset(rng.sample(range(12), 5))
        gone, into = moves.changed(a, b)
        assert (frozenset(gone), frozenset(into)) == (a - b, b - a)


def test_a_told_change_is_handed_out_for_those_two_versions_only() -> None:
    moves = Moves()
    x, y, z = Entry(1), Entry(2), Entry(3)
    old, new = (x, y), (y, z)
    moves.tell(old, new, [x], [z])
    assert moves.moved(old, new) == ([x], [z])
    copy = tuple(list(old))  # an equal version, another object: scanned, not the told answer
    assert moves.told(copy, new) is None
    went, came = moves.moved(copy, new)
    assert (list(went), list(came)) == ([x], [z])
    assert moves.moved(new, new) == ((), ())


def test_exactly_drops_what_left_and_came_back() -> None:
    x, y, z = Entry(1), Entry(2), Entry(3)
    assert exactly([x, y], [y, z]) == ([x], [z])
    assert scan_changed(frozenset({1}), frozenset({2})) == ((1,), (2,))


def test_two_agents_moves_neither_share_nor_evict_each_others_changes() -> None:
    """Two agents in one process (the demo, the tests): what one is told the other never hands out, and
    however much one of them is told, the other's changes stay."""
    first, second = Moves(), Moves()
    a, b = (Entry(1),), (Entry(2),)
    _tell(first, a, b)
    assert first.told(a, b) is not None and second.told(a, b) is None
    for i in range(second.limit * 3):  # many unrelated changes told to the second agent's Moves
        _tell(second, (Entry(i),), (Entry(i),))
    assert first.told(a, b) == scan_moved(a, b) and len(first) == 1
    assert len(second) <= second.limit


def test_a_table_that_moves_on_drops_its_old_versions() -> None:
    """A table followed version after version: only its last two steps (three versions) are held, the
    older versions are freed (nothing else holds them here)."""
    moves = Moves()
    versions: list[weakref.ref[frozenset[int]]] = []
    last = frozenset({0})
    for i in range(1, 40):
        new = frozenset({i, i + 1})
        moves.changed(last, new)  # scanned once, remembered for the other followers
        versions.append(weakref.ref(last))
        last = new
    gc.collect()
    alive = [n for n, ref in enumerate(versions) if ref() is not None]
    assert alive == [len(versions) - 2, len(versions) - 1]  # with `last`: three versions held
    assert len(moves) == 2


def test_the_old_entries_of_a_tuple_table_are_freed_too() -> None:
    moves = Moves()
    old = tuple(Entry(i) for i in range(50))
    gone = weakref.ref(old[0])
    table = old
    for i in range(5):
        new = (*table[1:], Entry(100 + i))
        moves.tell(table, new, [table[0]], [new[-1]])
        table = new
    del old, new
    gc.collect()
    assert gone() is None  # the first version, and its entry that left, are no longer held


def test_a_version_missed_between_two_told_changes_is_followed_through_it() -> None:
    moves = Moves()
    for seed in range(300):
        rng = random.Random(seed)
        pool = [Entry(i) for i in range(10)]
        a, b, c = (tuple(rng.sample(pool, rng.randrange(7))) for _ in range(3))
        _tell(moves, a, b)
        _tell(moves, b, c)
        if len({id(a), id(b), id(c)}) == 3:
            assert moves.told(a, c) is None and moves.through(a, c) is not None  # not scanned
        assert a is c or {id(x) for x in moves.moved(a, c)[0]} == {id(x) for x in scan_moved(a, c)[0]}
        assert a is c or {id(x) for x in moves.moved(a, c)[1]} == {id(x) for x in scan_moved(a, c)[1]}
        x, y, z = (frozenset(rng.sample(range(10), rng.randrange(7))) for _ in range(3))
        moves.tell(x, y, *scan_changed(x, y))
        moves.tell(y, z, *scan_changed(y, z))
        found = moves.changed(x, z)
        assert (frozenset(found[0]), frozenset(found[1])) == (x - z, z - x)


def test_a_follower_two_versions_behind_is_served_after_the_table_moved_on_again() -> None:
    """The PSK layer and a pass's followers may be two versions behind (the datastore moved on during the
    pass): the last two steps are kept for them; a follower further behind is scanned for, correctly."""
    moves = Moves()
    v = [tuple(Entry(i) for i in range(n, n + 3)) for n in range(5)]
    for old, new in itertools.pairwise(v):
        _tell(moves, old, new)
    assert moves.told(v[2], v[3]) is not None and moves.told(v[3], v[4]) is not None
    assert moves.told(v[0], v[1]) is None and moves.told(v[1], v[2]) is None  # dropped as it moved on
    assert moves.through(v[2], v[4]) is not None
    went, came = moves.moved(v[0], v[4])  # not remembered: scanned
    assert ({id(x) for x in went}, {id(x) for x in came}) == ({id(x) for x in v[0]}, {id(x) for x in v[4]})
