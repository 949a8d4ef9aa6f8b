"""The diff of the next state from the last one, diffing again only the keys that can have changed. Pure:
`rediff(last, desired, actual).actions` is always exactly `diff(desired, actual)`.

The diff is a function of each per-key table taken key by key, given the devices: WireGuard peers by
public key, routes (ours and foreign) and guards by destination, FDB entries by MAC, neighbour entries
by (device, address); no key's actions depend on another key's entries, and each group of the diff is
sorted. So the diff of the states cut down to a set of keys is the full diff cut down to them, in the
full diff's order; and a key whose entries are unchanged since the last diff, that the last diff did not
act on, has no action now either. `rediff` cuts the states down to the keys whose entries changed (by
identity first, equality where the identity differs) plus the keys the last diff acted on (an action
that failed, or whose effect the kernel view does not show yet, is still owed), and diffs those.

The devices (links, their addresses, our key and port) are small and global: when one changed, or a
table holds two entries under one key, the whole diff runs. Per-key indexes of the last state are kept
(copied on change, never modified) so that a pass finds a key's entries without a scan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from meshd.core import actions as a
from meshd.core.diff import diff
from meshd.core.guard import AddGuard, RemoveGuard
from meshd.core.moves import Moves
from meshd.core.state import ActualState, DesiredState, ObservedWireGuard

Index = Mapping[Hashable, Any]
"""key -> the one entry of a table with that key."""
Keys = tuple[set[Hashable], ...]
"""Per group: the keys to diff again."""

PEERS, ROUTES, FDB, NEIGHBORS, GUARDS = range(5)
WHOLE = 0.25  # past this share of the entries, cutting the states down saves nothing: diff them whole
_DEVICE_ACTIONS = (
    a.CreateWireGuardDevice, a.ConfigureWireGuardDevice, a.CreateVxlanDevice, a.CreateIpipDevice,
    a.SetLinkMtu, a.SetLinkUp, a.DeleteDevice, a.AddAddress, a.RemoveAddress,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Table:
    group: int
    read: Callable[[DesiredState, ActualState], Collection[Any]]
    key: Callable[[Any], Hashable]
    seen: Callable[[Any], object] | None = None  # what the diff reads of a sequence's entry; None: all


def _observed_peers(_: DesiredState, actual: ActualState) -> Collection[Any]:
    return actual.wireguard.peers if actual.wireguard is not None else ()


_PEER_KEY = attrgetter("public_key.raw")  # bytes: hashed once, in C
_OBSERVED = attrgetter("public_key", "endpoint", "allowed_ips", "persistent_keepalive")
"""What the peer diff compares of an observed peer: a new handshake or byte count is no change to it."""
TABLES = (
    _Table(PEERS, lambda d, _: d.peers, _PEER_KEY),
    _Table(PEERS, _observed_peers, _PEER_KEY, _OBSERVED),
    _Table(ROUTES, lambda d, _: d.routes, attrgetter("dst")),
    _Table(ROUTES, lambda _, x: x.routes, attrgetter("dst")),
    _Table(FDB, lambda d, _: d.fdb, attrgetter("mac")),
    _Table(FDB, lambda _, x: x.fdb, attrgetter("mac")),
    _Table(NEIGHBORS, lambda d, _: d.neighbors, attrgetter("dev", "ip")),
    _Table(NEIGHBORS, lambda _, x: x.neighbors, attrgetter("dev", "ip")),
)


@dataclass(frozen=True, slots=True)
class Diffed:
    """A diff and what it was made from, for the next `rediff`."""

    desired: DesiredState
    actual: ActualState
    actions: tuple[a.Action, ...]
    indexes: tuple[Index | None, ...]  # one per table of TABLES; None: a key holds two entries
    whole: bool = True  # the diff ran on the whole states (for tests and counters)


def rediff(
    last: Diffed | None,
    desired: DesiredState,
    actual: ActualState,
    moves: Moves,
    *,
    whole_past: float = WHOLE,
) -> Diffed:
    """The diff of (desired, actual), from the last one when there is one: always `diff(desired, actual)`.
    Past `whole_past` of the entries to diff again, the whole states are diffed. `moves`: the agent's."""
    if last is None:
        indexes = tuple(_build(t.read(desired, actual), t.key) for t in TABLES)
        return Diffed(desired, actual, diff(desired, actual), indexes)
    indexes, changed = _follow(last, desired, actual, moves)
    keys = _keys(changed, last, desired, actual)
    if keys is None or not _same_devices(last, desired, actual) or _large(keys, desired, actual, whole_past):
        return Diffed(desired, actual, diff(desired, actual), indexes)
    cut_desired, cut_actual = _cut(desired, actual, keys, indexes)
    return Diffed(desired, actual, diff(cut_desired, cut_actual), indexes, whole=False)


def _follow(
    last: Diffed, desired: DesiredState, actual: ActualState, moves: Moves
) -> tuple[tuple[Index | None, ...], list[set[Hashable] | None]]:
    """Each table's index for the new state, and the keys whose entries changed (None: unknown)."""
    indexes: list[Index | None] = []
    changed: list[set[Hashable] | None] = []
    for table, index in zip(TABLES, last.indexes, strict=True):
        old, new = table.read(last.desired, last.actual), table.read(desired, actual)
        if old is new and index is not None:
            indexes.append(index)
            changed.append(set())
            continue
        if index is None:
            follow: tuple[Index | None, set[Hashable] | None] = (_build(new, table.key), None)
        elif isinstance(old, frozenset) and isinstance(new, frozenset):
            follow = _follow_set(index, *moves.changed(old, new), new, table.key)
        else:
            assert isinstance(old, tuple) and isinstance(new, tuple)
            follow = _follow_sequence(index, *moves.moved(old, new), table)
            if follow[0] is not None and len(follow[0]) != len(new):  # one object twice: index it again
                follow = (_build(new, table.key), None)
        indexes.append(follow[0])
        changed.append(follow[1])
    return tuple(indexes), changed


def _build(entries: Collection[Any], key: Callable[[Any], Hashable]) -> Index | None:
    index = dict(zip(map(key, entries), entries, strict=True))
    return index if len(index) == len(entries) else None


def _follow_set(
    index: Index,
    gone: Sequence[Any],
    came: Sequence[Any],
    new: frozenset[Any],
    key: Callable[[Any], Hashable],
) -> tuple[Index | None, set[Hashable] | None]:
    """A set's entries compare by value: `gone` and `came` (meshd.core.moves) are the entries that left
    and joined it."""
    if not gone and not came:
        return index, set()
    following = dict(index)
    for entry in gone:
        k = key(entry)
        held = following.get(k)
        if held is not entry and held != entry:  # the index is not this set's: build it again
            return _build(new, key), None
        del following[k]
    for entry in came:
        k = key(entry)
        if k in following:
            return None, None
        following[k] = entry
    return following, {key(e) for e in (*gone, *came)}


def _follow_sequence(
    index: Index, gone: Sequence[Any], came: Sequence[Any], table: _Table
) -> tuple[Index | None, set[Hashable] | None]:
    """A sequence (peers) is followed by identity (`gone`, `came`: the entries that left and joined it,
    meshd.core.moves): a plan and a device read share the unchanged entries, so only the entries that
    came or went are looked at. A key changed when its entry is neither the last one nor equal to it in
    what the diff reads, or when it went."""
    key, view = table.key, table.seen or (lambda entry: entry)
    following = dict(index)
    went: list[Hashable] = []
    for entry in gone:
        k = key(entry)
        if following.get(k) is entry:
            del following[k]
        went.append(k)
    changed: set[Hashable] = set()
    for entry in came:
        k = key(entry)
        if k in following:  # two entries under one key
            return None, None
        following[k] = entry
        if (o := index.get(k)) is None or view(o) != view(entry):
            changed.add(k)
    changed.update(k for k in went if k not in following)
    return following, changed


def _keys(
    changed: list[set[Hashable] | None], last: Diffed, desired: DesiredState, actual: ActualState
) -> Keys | None:
    """Per group, the keys to diff again: changed in a table, or acted on by the last diff."""
    keys = _acted(last.actions)
    if keys is None:
        return None
    for table, found in zip(TABLES, changed, strict=True):
        if found is None:
            return None
        keys[table.group].update(found)
    before, after = last.actual.foreign_routes, actual.foreign_routes
    if before is not after:
        keys[ROUTES].update(r.dst for r in before ^ after)
    for old, new in ((last.desired.guards, desired.guards), (last.actual.guards, actual.guards)):
        if old is not new:
            keys[GUARDS].update(old ^ new)
    return keys


def _acted(actions: Iterable[a.Action]) -> Keys | None:
    """Per group, the keys the actions act on; None when one is of no group and no device."""
    keys: Keys = (set(), set(), set(), set(), set())
    for action in actions:
        match action:
            case a.AddPeer(spec):
                keys[PEERS].add(spec.public_key.raw)
            case a.UpdatePeer() | a.RemovePeer():
                keys[PEERS].add(action.public_key.raw)
            case a.ReplaceRoute(route) | a.RemoveRoute(route):
                keys[ROUTES].add(route.dst)
            case a.AddFdb(_, fdb) | a.RemoveFdb(_, fdb):
                keys[FDB].add(fdb.mac)
            case a.AddNeighbor(neighbor) | a.RemoveNeighbor(neighbor):
                keys[NEIGHBORS].add((neighbor.dev, neighbor.ip))
            case AddGuard(dst) | RemoveGuard(dst):
                keys[GUARDS].add(dst)
            case _ if not isinstance(action, _DEVICE_ACTIONS):
                return None
    return keys


def _same_devices(last: Diffed, desired: DesiredState, actual: ActualState) -> bool:
    """The devices, wanted and observed (all but the per-key tables), are what the last diff saw."""
    d0, a0 = last.desired, last.actual
    pairs = (
        (d0.wireguard, desired.wireguard),
        (d0.vxlan, desired.vxlan),
        (d0.ipip, desired.ipip),
        (a0.vxlan, actual.vxlan),
        (a0.ipip, actual.ipip),
        (_device(a0.wireguard), _device(actual.wireguard)),
    )
    return all(x is y or x == y for x, y in pairs)


def _device(observed: ObservedWireGuard | None) -> ObservedWireGuard | None:
    return replace(observed, peers=()) if observed is not None else None


def _large(keys: Keys, desired: DesiredState, actual: ActualState, share: float) -> bool:
    entries = sum(len(t.read(desired, actual)) for t in TABLES) + len(desired.guards) + len(actual.guards)
    return sum(map(len, keys)) > share * entries


def _cut(
    desired: DesiredState, actual: ActualState, keys: Keys, indexes: tuple[Index | None, ...]
) -> tuple[DesiredState, ActualState]:
    """The states cut down to `keys` (every index is known here: a missing one meant a whole diff)."""
    got = [_pick(index, keys[t.group]) for t, index in zip(TABLES, indexes, strict=True)]
    cut_desired = replace(
        desired,
        peers=tuple(got[0]),
        routes=frozenset(got[2]),
        fdb=frozenset(got[4]),
        neighbors=frozenset(got[6]),
        guards=desired.guards.intersection(keys[GUARDS]),
    )
    wireguard = actual.wireguard
    cut_actual = replace(
        actual,
        wireguard=replace(wireguard, peers=tuple(got[1])) if wireguard is not None else None,
        routes=frozenset(got[3]),
        foreign_routes=frozenset(r for r in actual.foreign_routes if r.dst in keys[ROUTES]),
        fdb=frozenset(got[5]),
        neighbors=frozenset(got[7]),
        guards=actual.guards.intersection(keys[GUARDS]),
    )
    return cut_desired, cut_actual


def _pick(index: Index | None, keys: set[Hashable]) -> list[Any]:
    assert index is not None
    return [index[k] for k in keys if k in index]
