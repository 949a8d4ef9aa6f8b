"""The tables from the last ones equal the tables made whole: after any history of parts leaving and
coming, with entries drawn from small pools so that parts share entries and peers share keys, `retable`
gives exactly what `tables` gives. And a plan keeps a kept pair's entries as the very same objects."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from typing import TypeVar

from keys.values import PublicKey
from meshd.core.assembly import SETS, Part, Tables, retable, tables
from meshd.core.incremental import replan
from meshd.core.model import LocalNode, Snapshot
from meshd.core.moves import Moves
from meshd.core.state import FdbEntry, NeighborEntry, PeerSpec, Route
from tests.test_incremental_properties import _node
from tests.told import told_exactly

KEYS = [PublicKey(bytes([i]) * 32) for i in range(1, 7)]
NETS = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(4)]
ADDRS = [ipaddress.ip_address(f"198.18.0.{i}") for i in range(1, 4)]
MACS = [f"02:00:00:00:00:0{i}" for i in range(3)]
T = TypeVar("T")


def _some(rng: random.Random, make: Callable[[], T], most: int) -> tuple[T, ...]:
    return tuple(make() for _ in range(rng.randrange(most)))


def _part(rng: random.Random) -> Part:
    """A random part; its entries are new objects, often equal to other parts' entries."""

    def peer() -> PeerSpec:
        return PeerSpec(rng.choice(KEYS), None, frozenset({rng.choice(NETS)}), node=rng.choice("ab"))

    return Part(
        peers=_some(rng, peer, 2),
        fdb=_some(rng, lambda: FdbEntry(rng.choice(MACS), rng.choice(ADDRS)), 3),
        neighbors=_some(rng, lambda: NeighborEntry("v", rng.choice(ADDRS), rng.choice(MACS)), 3),
        routes=_some(rng, lambda: Route(rng.choice(NETS), rng.choice(("w", "v"))), 3),
    )


def _same(got: Tables, want: Tables) -> bool:
    return (got.peers, got.fdb, got.neighbors, got.routes, got.given) == (
        want.peers,
        want.fdb,
        want.neighbors,
        want.routes,
        want.given,
    )


def test_the_tables_from_the_last_ones_equal_the_whole_tables_after_any_history() -> None:
    moves = Moves()
    told_moves = 0
    for seed in range(200):
        rng = random.Random(seed)
        parts = [_part(rng) for _ in range(rng.randrange(8))]
        if parts and rng.random() < 0.3:  # two pairs giving the very same peer
            parts.append(Part(peers=rng.choice(parts).peers))
        last = tables(parts)
        for _ in range(12):
            leaving = {i for i in range(len(parts)) if rng.random() < 0.3}
            came = [_part(rng) for _ in range(rng.randrange(3))]
            gone = [p for i, p in enumerate(parts) if i in leaving]
            if gone and rng.random() < 0.2:  # a part that left comes back, or shares its entries
                back = rng.choice(gone)
                came.append(back if rng.random() < 0.5 else Part(back.peers, back.fdb, back.neighbors))
            kept = [p for i, p in enumerate(parts) if i not in leaving]
            at = rng.randrange(len(kept) + 1)  # the new pairs' place in the order (remotes are by name)
            parts = [*kept[:at], *came, *kept[at:]]
            last_now = retable(last, gone, came, parts, moves)
            assert _same(last_now, tables(parts)), f"seed {seed}"
            for table in ("peers", *SETS):  # what it says moved (meshd.core.moves) is what moved
                old, new = getattr(last, table), getattr(last_now, table)
                if old is not new and moves.told(old, new) is not None:
                    assert told_exactly(moves, old, new), f"seed {seed}: {table}"
                    told_moves += 1
            last = last_now
    assert told_moves > 500  # the tables were followed, not made whole, most of the time


def test_a_shared_entry_that_one_part_takes_away_stays_while_another_gives_it() -> None:
    moves = Moves()
    route = Route(NETS[0], "w")
    first, second = Part(routes=(route,)), Part(routes=(Route(NETS[0], "w"),))  # equal, not the same object
    both = tables([first, second])
    assert (both.routes, both.given) == (frozenset({route}), (0, 0, 2))
    assert retable(both, [first], [], [second], moves).routes == frozenset({route})
    assert retable(both, [first, second], [], [], moves).routes == frozenset()


def test_peers_stay_sorted_by_key_and_equal_keys_keep_the_order_of_their_parts() -> None:
    moves = Moves()
    a, b = PeerSpec(KEYS[1], None, frozenset(), node="a"), PeerSpec(KEYS[1], None, frozenset(), node="b")
    low = PeerSpec(KEYS[0], None, frozenset(), node="low")
    start = tables([Part(peers=(a,))])
    later = [Part(peers=(a,)), Part(peers=(b,)), Part(peers=(low,))]
    assert retable(start, [], later[1:], later, moves).peers == (low, a, b)
    earlier = [Part(peers=(b,)), Part(peers=(a,))]
    assert retable(start, [], earlier[:1], earlier, moves).peers == (b, a)


def test_a_plan_keeps_a_kept_pairs_entries_as_the_same_objects() -> None:
    moves = Moves()
    cluster = [_node(i) for i in range(20)]
    local = LocalNode(cluster[0])
    first = replan(None, Snapshot.of(cluster), local, moves)
    grown = replan(first, Snapshot.of([*cluster, _node(20)]), local, moves)
    before = {id(e) for e in (*first.state.peers, *first.state.routes, *first.state.fdb)}
    after = {id(e) for e in (*grown.state.peers, *grown.state.routes, *grown.state.fdb)}
    assert len(after - before) == 3, "only the new pair's peer, route and FDB entry are new objects"
    assert len(before - after) == 0
    for table in ("pairs", "peers", "fdb", "routes"):  # and it says which (meshd.core.moves)
        assert told_exactly(moves, getattr(first.state, table), getattr(grown.state, table)), table
