"""The owned route table: routes to peers' pod CIDRs, marked with our route protocol number.

Only routes carrying `protocol` in `table` are ever replaced or removed. Routes of others are left alone
and reported when they would capture traffic for a destination we route or watch: a route whose
destination equals or lies inside one of those networks. Broader routes (the default route, an underlay
/16) are not reported: the longest prefix wins, so ours still apply. A route that drops (unreachable,
blackhole, prohibit) is reported without a device. Our own guards are not routes here (overlay.guards).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterable, Sequence

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.rtmsg import RTNH_F_ONLINK

from meshd.core.model import IPNetwork
from meshd.core.netset import NetworkSet
from meshd.core.state import RTPROT_MESHD, Route
from meshd.errors import PermanentError
from meshd.netlink import (
    NetlinkSocket,
    OnSocket,
    batch_failure,
    family_of,
    netlink_errors,
)
from meshd.rtnl_msgs import RTN_UNICAST, RouteMsg, RouteRequest

log = logging.getLogger(__name__)

_GONE = frozenset({errno.ESRCH, errno.ENOENT, errno.ENODEV})
_FAMILY_ANY = {socket.AF_INET: "0.0.0.0/0", socket.AF_INET6: "::/0"}


def route_of(msg: RouteMsg, names: dict[int, str]) -> Route:
    """The Route a decoded route message describes; a dropping route (unreachable, blackhole, prohibit)
    sends nothing anywhere: it has no device."""
    unicast = msg.kind == RTN_UNICAST
    oif, gateway = (msg.oif, msg.gateway) if unicast else (None, None)
    return Route(
        dst=msg.dst,
        dev=names.get(oif, "") if oif is not None else "",
        via=gateway,
        onlink=bool(msg.flags & RTNH_F_ONLINK),
    )


class NetlinkRouteTable(OnSocket):
    """Our routes in one table of one network namespace (None: the namespace of this process)."""

    def __init__(
        self,
        *,
        netns: str | None = None,
        table: int = 254,
        protocol: int = RTPROT_MESHD,
        watch: Iterable[IPNetwork] = (),
    ) -> None:
        self.sock = NetlinkSocket(netns=netns)
        self.table = table
        self.protocol = protocol
        self._watch = NetworkSet(watch)
        self._owned = NetworkSet()  # destinations of our routes, as last observed or changed
        self.foreign_all: set[tuple[Route, int]] = (
            set()
        )  # others' routes in our table (with metrics), last read

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        """Networks (peers' pod CIDRs) for which foreign routes are reported, besides ours. A NetworkSet is
        held as it is (its owner keeps it current in place)."""
        self._watch = nets if isinstance(nets, NetworkSet) else NetworkSet(nets)

    async def _routes(self, names: dict[int, str]) -> list[tuple[int, Route, int]]:
        """(protocol, route, metric) of every unicast-ish route in our table, both families."""
        routes = await self.sock.routes()
        return [(m.protocol, route_of(m, names), m.priority or 0) for m in routes if self.holds(m)]

    def holds(self, msg: RouteMsg) -> bool:
        """Whether `msg` is a route of our table (ours or foreign) and not one of our guards."""
        return msg.table == self.table and not (msg.protocol == self.protocol and msg.kind != RTN_UNICAST)

    async def observe(self) -> tuple[frozenset[Route], frozenset[Route]]:
        routes = await self._routes(await self.sock.names_by_index())
        ours = frozenset(r for proto, r, _ in routes if proto == self.protocol)
        self._owned = NetworkSet(r.dst for r in ours)
        self.foreign_all = {(r, metric) for proto, r, metric in routes if proto != self.protocol}
        return ours, frozenset(r for r, _ in self.foreign_all if self.is_watched(r.dst))

    def forget(self, dst: IPNetwork) -> None:
        """Our route to `dst` is gone (deleted by someone else): the next one there is added exclusively."""
        self._owned.discard(dst)

    def is_watched(self, dst: IPNetwork) -> bool:
        """Whether a foreign route to `dst` is reported: it lies inside a watched network or one of ours."""
        return self._watch.covers(dst) or self._owned.covers(dst)

    async def replace(self, route: Route) -> None:
        await self.replace_all([route])

    async def replace_all(self, routes: Sequence[Route]) -> None:
        """Add each route, or atomically move our existing route to the same destination (`ip route
        replace ... proto P`), all in one batch. A destination we do not hold is added exclusively, so a
        foreign route that appeared since the last observe is never overwritten: that is refused and
        reported instead. The routes that fail are named in one BatchError after the others are in."""
        indexes = await self._indexes()
        sent = [(r, indexes[r.dev]) for r in routes if r.dev in indexes]
        failed = [(self._doing(r), errno.ENODEV) for r in routes if r.dev not in indexes]
        verbs = ["replace" if r.dst in self._owned else "add" for r, _ in sent]
        codes = await self._batch([self._request(v, r, i) for v, (r, i) in zip(verbs, sent, strict=True)])
        for (route, index), first in zip(sent, codes, strict=True):
            code = first
            if first in (errno.EEXIST, errno.EINVAL):  # maybe ours after all, or an IPv6 move: one by one
                code = await self._replace_one(route, index, failed)
            if code == 0:
                self._owned.add(route.dst)
                log.debug("route %s via %s dev %s (proto %d)", route.dst, route.via, route.dev, self.protocol)
            elif code > 0:
                failed.append((self._doing(route), code))
        if failed:
            raise batch_failure(failed)

    def _doing(self, route: Route) -> str:
        return f"routing {route.dst} via {route.via} dev {route.dev}{self.sock.where}"

    async def _indexes(self) -> dict[str, int]:
        return {name: index for index, name in (await self.sock.names_by_index()).items()}

    async def _batch(self, requests: Sequence[RouteRequest]) -> list[int]:
        with netlink_errors(f"changing {len(requests)} routes{self.sock.where}"):
            return await self.sock.raw.batch(requests) if requests else []

    async def _replace_one(self, route: Route, index: int, failed: list[tuple[str, int]]) -> int:
        """The slow path for one route: 0 when it is in, its errno when it failed, -1 when a refusal was
        added to `failed` already."""
        doing = self._doing(route)
        try:
            if route.dst in self._owned:
                await self._replace_ours(route, index, doing)
            else:
                try:
                    await self._send("add", route, index)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
                    await self._refuse_foreign(route.dst, doing)  # ours after all: move it
                    await self._replace_ours(route, index, doing)
        except NetlinkError as exc:
            return int(exc.code or errno.EIO)
        except PermanentError as exc:
            failed.append((str(exc), errno.EEXIST))
            return -1
        return 0

    async def _replace_ours(self, route: Route, index: int, doing: str) -> None:
        try:
            await self._send("replace", route, index)
        except NetlinkError as exc:
            if exc.code != errno.EINVAL or route.via is None or route.dst.version != 6:
                raise
            # IPv6 validates an onlink gateway against the route being replaced, which still points at the
            # old device ("device mismatch"): move the route in two steps, and put the old one back if the
            # new one is refused too (never leave the destination without our route).
            log.info("%s: the kernel refuses an in-place IPv6 move; deleting and re-adding", doing)
            names = await self.sock.names_by_index()
            old = [
                r
                for proto, r, _ in await self._routes(names)
                if proto == self.protocol and r.dst == route.dst
            ]
            await self.sock.ipr().route(
                "del", dst=str(route.dst), family=family_of(route.dst), proto=self.protocol, table=self.table
            )
            try:
                await self._send("add", route, index)
            except NetlinkError:
                for previous in old:
                    back = {v: k for k, v in names.items()}.get(previous.dev)
                    if back is not None:
                        with contextlib.suppress(NetlinkError):
                            await self._send("add", previous, back)
                            log.warning("%s failed; restored the previous route via %s", doing, previous.dev)
                raise

    def _request(self, verb: str, route: Route, index: int | None) -> RouteRequest:
        return RouteRequest(
            verb,
            route.dst,
            index,
            self.table,
            self.protocol,
            gateway=route.via,
            flags=RTNH_F_ONLINK if route.onlink else 0,
        )

    async def _send(self, verb: str, route: Route, index: int) -> None:
        (code,) = await self.sock.raw.batch([self._request(verb, route, index)])
        if code:
            raise NetlinkError(code)

    async def _refuse_foreign(self, dst: IPNetwork, doing: str) -> None:
        """Raise when the route holding `dst` in our table is not ours."""
        routes = await self._routes(await self.sock.names_by_index())
        foreign = [(proto, r) for proto, r, _ in routes if r.dst == dst and proto != self.protocol]
        if foreign:
            proto, other = foreign[0]
            raise PermanentError(
                f"{doing}: a route to {dst} (dev {other.dev or '-'}, protocol {proto}) exists in "
                f"table {self.table} and is not ours; leaving it alone"
            )

    async def remove(self, route: Route) -> None:
        await self.remove_all([route])

    async def remove_all(self, routes: Sequence[Route]) -> None:
        """Delete our routes to each `dst` on its `dev`, in one batch; a route of another protocol is never
        matched, and one already gone (with its device, or by hand) is no failure."""
        indexes = await self._indexes()
        sent = [(r, indexes[r.dev]) for r in routes if r.dev in indexes]
        for route in routes:
            if route.dev not in indexes:
                log.debug("route %s: device %s is gone, and its routes with it", route.dst, route.dev)
        codes = await self._batch([self._request("del", r, i) for r, i in sent])
        failed: list[tuple[str, int]] = []
        for (route, _), code in zip(sent, codes, strict=True):
            if code and code not in _GONE:
                failed.append((f"removing route {route.dst} dev {route.dev}{self.sock.where}", code))
                continue
            self._owned.discard(route.dst)
            log.debug("removed route %s dev %s%s", route.dst, route.dev, " (already absent)" if code else "")
        if failed:
            raise batch_failure(failed)
