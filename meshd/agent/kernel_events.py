"""The kernel's rtnetlink notifications (links, addresses, routes, neighbours and FDB entries) in the node's
namespace, turned into changes of the state a pass observes.

Subscribed before the first full read, so nothing is missed in between. Each notification sets its object's
state absolutely (present with these attributes, or absent), so replaying ones that the full read already
reflects changes nothing. A lost notification (receive buffer overflow), a deleted link, an address change
or any change to one of our own links asks for a full read instead: those are rare and cheap to re-read.
A deleted route, guard, FDB or neighbour entry of ours wakes the loop at once, so it is repaired.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pyroute2.netlink import NLM_F_REPLACE
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP
from pyroute2.netlink.rtnl.rtmsg import RT_SCOPE_LINK

from meshd.agent.keyed import Edit, KeyedSets
from meshd.core.guard import GUARD_METRIC
from meshd.core.model import IPNetwork
from meshd.core.moves import Moves
from meshd.core.state import ActualState, DeviceNames, FdbEntry, NeighborEntry, Route
from meshd.rtnl import RawRtnl
from meshd.rtnl_msgs import (
    RTN_UNREACHABLE,
    RouteMsg,
    decode_addr,
    decode_link,
    decode_neigh,
    decode_route,
    link_flags,
    neigh_header,
)
from overlay.routes import NetlinkRouteTable, route_of
from vxlan.neighbors import NEIGH_FAMILIES, permanent_entry

log = logging.getLogger(__name__)

GROUPS = (
    RTMGRP_LINK
    | RTMGRP_NEIGH
    | RTMGRP_IPV4_IFADDR
    | RTMGRP_IPV4_ROUTE
    | RTMGRP_IPV6_IFADDR
    | RTMGRP_IPV6_ROUTE
)


@dataclass(frozen=True, slots=True)
class Change:
    """One object set absolutely: `present` with these attributes, or gone. `kind`: route (ours),
    foreign (another protocol's route in our table), guard, fdb or neighbor."""

    kind: str
    present: bool
    value: Route | IPNetwork | FdbEntry | NeighborEntry | str  # str: a link that went down or away
    metric: int = 0  # of a route
    replaces: bool = False  # a route that took the place of the one with its destination and metric


def _dst(route: Route) -> IPNetwork:
    return route.dst


def _on_dev(dev: str, route: Route) -> bool:
    return route.dev == dev


def _mac(entry: FdbEntry) -> str:
    return entry.mac


def _neighbor_key(entry: NeighborEntry) -> tuple[str, object]:
    return entry.dev, entry.ip


@dataclass
class KernelEvents:
    """Notifications from the kernel of `netns`, as Changes to fold into the last observed state."""

    routes: NetlinkRouteTable
    names: DeviceNames
    netns: str | None = None
    on_repair: Callable[[], None] = lambda: None
    """Called when an object of ours was deleted (or a full read is needed): run a pass soon."""
    _raw: RawRtnl | None = None
    _links: dict[int, str] = field(default_factory=dict)
    _changes: list[Change] = field(default_factory=list)
    _stale: bool = True  # only a full read can tell what the kernel holds
    _foreign: set[tuple[Route, int]] = field(default_factory=set)  # others' routes in our table, and metrics
    _routes: KeyedSets[IPNetwork, Route] = field(default_factory=lambda: KeyedSets(_dst))
    _fdb: KeyedSets[str, FdbEntry] = field(default_factory=lambda: KeyedSets(_mac))
    _neighbors: KeyedSets[tuple[str, object], NeighborEntry] = field(
        default_factory=lambda: KeyedSets(_neighbor_key)
    )

    @property
    def started(self) -> bool:
        return self._raw is not None

    async def start(self) -> None:
        """Subscribe (before the full read that follows), and learn the link names."""
        if self._raw is None:
            self._raw = RawRtnl(self.netns, GROUPS)
            asyncio.get_running_loop().add_reader(self._raw.socket().fileno(), self._readable)
        self._links = await self._raw.link_names()

    def reset(self) -> None:
        """A full read is starting: the notifications queued until now are reflected in it (or replayed
        harmlessly after it)."""
        self._readable()
        self._changes.clear()
        self._stale = False

    def forget(self) -> None:
        """The view is dropped: a pass is about to apply changes after which the next pass reads the
        whole kernel (a pass that applied anything is always followed by one, or retried reading it all).
        Until that read nothing is subscribed: what the pass writes (at a node's first pass, thousands of
        routes, neighbour and FDB entries) is not sent back to be decoded; the read that follows sees it
        all, and subscribes again first (`start`)."""
        self.close()
        self._stale = True

    def observed(self) -> None:
        """The full read is done: keep what it saw of foreign routes (it reports only the watched ones)."""
        self._foreign = set(self.routes.foreign_all)

    def keep(self, actual: ActualState) -> None:
        """The next fold will start from `actual`: index its entries now (after a full read, at the end of
        the pass that read it) rather than in the fold after the next change."""
        self._routes.keep(actual.routes)
        self._fdb.keep(actual.fdb)
        self._neighbors.keep(actual.neighbors)

    def fold(self, actual: ActualState, moves: Moves) -> ActualState | None:
        """`actual` with the changes since the last fold or full read (told to `moves`, the agent's); None
        when only a full read can tell."""
        self._readable()
        if self._stale:
            return None
        changes, self._changes = self._changes, []
        if not changes and self._watched_foreign() == actual.foreign_routes:
            return actual  # the same object: what was planned and diffed against it still holds
        routes, guards = self._routes.edit(actual.routes), set(actual.guards)
        fdb, neighbors = self._fdb.edit(actual.fdb), self._neighbors.edit(actual.neighbors)
        for change in changes:
            value = change.value
            if isinstance(value, Route):
                self._fold_route(change, value, routes)
            elif isinstance(value, str):
                self._foreign = {(r, m) for r, m in self._foreign if r.dev != value}
                routes.discard_if(functools.partial(_on_dev, value))
            elif isinstance(value, FdbEntry):
                held = tuple(e for e in fdb.get(value.mac) if e != value)
                fdb.set(value.mac, (value,) if change.present else held)
            elif isinstance(value, NeighborEntry):
                neighbors.set((value.dev, value.ip), (value,) if change.present else ())
            else:
                (guards.add if change.present else guards.discard)(value)
        return replace(
            actual,
            routes=routes.result(moves),
            foreign_routes=self._watched_foreign(),
            guards=frozenset(guards),
            fdb=fdb.result(moves),
            neighbors=neighbors.result(moves),
        )

    def _watched_foreign(self) -> frozenset[Route]:
        return frozenset(r for r, _ in self._foreign if self.routes.is_watched(r.dst))

    def _fold_route(self, change: Change, route: Route, routes: Edit[IPNetwork, Route]) -> None:
        if change.present and change.replaces:  # the kernel sends no deletion of the replaced route
            routes.set(route.dst, ())
            self._foreign = {(r, m) for r, m in self._foreign if (r.dst, m) != (route.dst, change.metric)}
        if change.kind == "route":
            routes.set(route.dst, (route,) if change.present else ())
            if not change.present:
                self.routes.forget(route.dst)
            return
        self._foreign.discard((route, change.metric))
        if change.present:
            self._foreign.add((route, change.metric))

    def _readable(self) -> None:
        if self._raw is None:
            return
        try:
            msgs, lost = self._raw.drain()
        except OSError as exc:
            log.warning("reading kernel notifications failed (%s); the next pass reads the kernel", exc)
            msgs, lost = [], True
        repair = lost
        for kind, flags, payload in msgs:
            repair |= self._note(kind, flags, payload)
        if lost:
            log.info("kernel notifications were lost; the next pass reads the whole kernel state")
            self._stale = True
        if repair:
            self.on_repair()

    def _note(self, kind: int, flags: int, payload: memoryview) -> bool:
        """Record one notification; True when it deleted something of ours or needs a full read."""
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            msg = decode_route(payload)
            change = self._route(msg, present=kind == RTM_NEWROUTE) if msg is not None else None
            if change is not None and flags & NLM_F_REPLACE:
                change = replace(change, replaces=True)
        elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
            change = self._neigh(payload, present=kind == RTM_NEWNEIGH)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            return self._link(payload, deleted=kind == RTM_DELLINK)
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            index, scope = decode_addr(payload)
            ours = self._links.get(index) in self.names.owned()
            if scope != RT_SCOPE_LINK and (ours or kind == RTM_DELADDR):
                self._stale = True  # our links' addresses are state; a removed one takes routes silently
            return False
        else:
            return False
        if change is None:
            return False
        self._changes.append(change)
        return not change.present and change.kind != "foreign"

    def _route(self, msg: RouteMsg, *, present: bool) -> Change | None:
        table = self.routes
        if msg.table != table.table:
            return None
        if msg.protocol == table.protocol and msg.kind == RTN_UNREACHABLE and msg.priority == GUARD_METRIC:
            return Change("guard", present, msg.dst)
        if not table.holds(msg):
            return None
        kind = "route" if msg.protocol == table.protocol else "foreign"
        return Change(kind, present, route_of(msg, self._links), metric=msg.priority or 0)

    def _neigh(self, payload: memoryview, *, present: bool) -> Change | None:
        vxlan = self.names.vxlan
        if self._links.get(neigh_header(payload)[1]) != vxlan:
            return None  # most neighbour traffic is other links' ARP/ND: not decoded
        msg = decode_neigh(payload)
        if msg.dst is None:
            return None
        permanent = permanent_entry(msg, msg.ifindex) is not None
        if msg.family == socket.AF_BRIDGE and msg.mac is not None:
            return Change("fdb", present and permanent, FdbEntry(mac=msg.mac, dst=msg.dst))
        if msg.family in NEIGH_FAMILIES:  # a deleted neighbour may come without its MAC
            entry = NeighborEntry(dev=vxlan, ip=msg.dst, mac=msg.mac or "")
            return Change("neighbor", present and permanent, entry)
        return None

    def _link(self, payload: memoryview, *, deleted: bool) -> bool:
        index, name = decode_link(payload)
        ours = self.names.owned()
        if name in ours or self._links.get(index) in ours:
            self._stale = True  # one of our links changed: read it, and what it holds, again
            self.on_repair()
        elif deleted or not link_flags(payload) & IFF_UP:  # its IPv4 routes go without notifications
            self._changes.append(Change("link-down", False, self._links.get(index, name)))
        if deleted:
            self._links.pop(index, None)
        elif name:
            self._links[index] = name
        return False

    def close(self) -> None:
        if self._raw is not None:
            self._raw_close(self._raw)
            self._raw = None

    @staticmethod
    def _raw_close(raw: RawRtnl) -> None:
        sock = raw.socket()
        asyncio.get_event_loop().remove_reader(sock.fileno())
        raw.close()
