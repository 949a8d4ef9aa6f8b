"""What changed between two versions of a table (meshd.core.moves): found or told, it is what a scan of
both versions finds; what a producer told is handed out for exactly those two versions, not for equal
copies of them, and only a bounded number of pairs is remembered."""

from __future__ import annotations

import random

from meshd.core import moves
from meshd.core.moves import changed, exactly, moved, scan_changed, scan_moved, tell, told
from tests.told import told_exactly


class Entry:
    """Compares by identity, as the planner's and the datastore's shared entries are told apart."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_moved_and_changed_are_what_a_scan_finds_after_any_edits() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        pool = [Entry(i) for i in range(12)]
        old = tuple(rng.sample(pool, rng.randrange(8)))
        new = tuple(rng.sample(pool, rng.randrange(8)))
        went, came = moved(old, new)
        assert {id(x) for x in went} == {id(x) for x in old} - {id(x) for x in new}
        assert {id(x) for x in came} == {id(x) for x in new} - {id(x) for x in old}
        assert old is new or told_exactly(old, new)  # remembered for the next follower
        a, b = frozenset(rng.sample(range(12), 5)), frozenset(rng.sample(range(12), 5))
        gone, into = changed(a, b)
        assert (frozenset(gone), frozenset(into)) == (a - b, b - a)


def test_a_told_change_is_handed_out_for_those_two_versions_only() -> None:
    x, y, z = Entry(1), Entry(2), Entry(3)
    old, new = (x, y), (y, z)
    tell(old, new, [x], [z])
    assert moved(old, new) == ([x], [z])
    copy = tuple(list(old))  # an equal version, another object: scanned, not the told answer
    assert told(copy, new) is None
    went, came = moved(copy, new)
    assert (list(went), list(came)) == ([x], [z])
    assert moved(new, new) == ((), ())


def test_exactly_drops_what_left_and_came_back() -> None:
    x, y, z = Entry(1), Entry(2), Entry(3)
    assert exactly([x, y], [y, z]) == ([x], [z])


def test_only_a_bounded_number_of_pairs_is_remembered() -> None:
    pairs = [((Entry(i),), (Entry(i),)) for i in range(moves.KEEP + 5)]
    for old, new in pairs:
        tell(old, new, scan_moved(old, new)[0], scan_moved(old, new)[1])
    assert len(moves._memo) <= moves.KEEP
    assert told(*pairs[0]) is None and told(*pairs[-1]) is not None
    assert scan_changed(frozenset({1}), frozenset({2})) == ((1,), (2,))


def test_a_version_missed_between_two_told_changes_is_followed_through_it() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        pool = [Entry(i) for i in range(10)]
        a, b, c = (tuple(rng.sample(pool, rng.randrange(7))) for _ in range(3))
        tell(a, b, *scan_moved(a, b))
        tell(b, c, *scan_moved(b, c))
        if len({id(a), id(b), id(c)}) == 3:
            assert told(a, c) is None and moves._through(a, c) is not None  # not scanned
        assert a is c or {id(x) for x in moved(a, c)[0]} == {id(x) for x in scan_moved(a, c)[0]}
        assert a is c or {id(x) for x in moved(a, c)[1]} == {id(x) for x in scan_moved(a, c)[1]}
        x, y, z = (frozenset(rng.sample(range(10), rng.randrange(7))) for _ in range(3))
        tell(x, y, *scan_changed(x, y))
        tell(y, z, *scan_changed(y, z))
        found = changed(x, z)
        assert (frozenset(found[0]), frozenset(found[1])) == (x - z, z - x)
