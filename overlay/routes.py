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
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.model import IPNetwork
from meshd.core.state import RTPROT_MESHD, Route
from meshd.errors import PermanentError
from meshd.netlink import RTNH_F_ONLINK, NetlinkSocket, OnSocket, family_of, translate

log = logging.getLogger(__name__)

_GONE = frozenset({errno.ESRCH, errno.ENOENT, errno.ENODEV})
_FAMILY_ANY = {socket.AF_INET: "0.0.0.0/0", socket.AF_INET6: "::/0"}
RTN_UNICAST = 1


def _inside(dst: IPNetwork, nets: Iterable[IPNetwork]) -> bool:
    return any(dst.version == net.version and dst.subnet_of(net) for net in nets)  # type: ignore[arg-type]


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
        self._watch = frozenset(watch)
        self._owned: set[IPNetwork] = set()  # destinations of our routes, as last observed or changed

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        """Networks (peers' pod CIDRs) for which foreign routes are reported, besides ours."""
        self._watch = frozenset(nets)

    async def _routes(self, names: dict[int, str]) -> list[tuple[int, Route]]:
        """(protocol, route) of every unicast-ish route in our table, both families."""
        found: list[tuple[int, Route]] = []
        for family in _FAMILY_ANY:
            async for msg in self.sock.dump("route", family=family, table=self.table):
                proto = int(msg["proto"])
                if msg.get("RTA_TABLE", msg["table"]) != self.table:
                    continue
                if proto == self.protocol and msg["type"] != RTN_UNICAST:
                    continue  # our guards (overlay.guards), not routes to a transport
                found.append((proto, self._route(msg, names)))
        return found

    def _route(self, msg: Any, names: dict[int, str]) -> Route:
        dst = msg.get("RTA_DST")
        net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}" if dst else _FAMILY_ANY[msg["family"]])
        oif, gateway = msg.get("RTA_OIF"), msg.get("RTA_GATEWAY")
        hops = msg.get("RTA_MULTIPATH") or ()
        if oif is None and hops:  # a multipath route: named by its first hop's device
            oif, gateway = hops[0]["oif"], hops[0].get("RTA_GATEWAY")
        if msg["type"] != RTN_UNICAST:  # unreachable, blackhole, prohibit: sends nothing anywhere
            oif = gateway = None
        return Route(
            dst=net,
            dev=names.get(int(oif), "") if oif is not None else "",
            via=ipaddress.ip_address(gateway) if gateway else None,
            onlink=bool(msg["flags"] & RTNH_F_ONLINK),
        )

    async def observe(self) -> tuple[frozenset[Route], frozenset[Route]]:
        routes = await self._routes(await self.sock.names_by_index())
        ours = frozenset(r for proto, r in routes if proto == self.protocol)
        self._owned = {r.dst for r in ours}
        watched = self._watch | self._owned
        foreign = frozenset(r for proto, r in routes if proto != self.protocol and _inside(r.dst, watched))
        return ours, foreign

    async def replace(self, route: Route) -> None:
        """Add the route, or atomically move our existing route to the same destination (`ip route
        replace ... proto P`). A destination we do not hold is added exclusively, so a foreign route that
        appeared since the last observe is never overwritten: that is refused and reported instead."""
        doing = f"routing {route.dst} via {route.via} dev {route.dev}{self.sock.where}"
        index = await self.sock.require_index(route.dev)
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
            raise translate(exc, doing) from exc
        self._owned.add(route.dst)
        log.debug("route %s via %s dev %s (proto %d)", route.dst, route.via, route.dev, self.protocol)

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
                r for proto, r in await self._routes(names) if proto == self.protocol and r.dst == route.dst
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

    async def _send(self, verb: str, route: Route, index: int) -> None:
        extra: dict[str, Any] = {"gateway": str(route.via)} if route.via is not None else {}
        await self.sock.ipr().route(
            verb,
            dst=str(route.dst),
            oif=index,
            family=family_of(route.dst),
            proto=self.protocol,
            table=self.table,
            flags=RTNH_F_ONLINK if route.onlink else 0,
            **extra,
        )

    async def _refuse_foreign(self, dst: IPNetwork, doing: str) -> None:
        """Raise when the route holding `dst` in our table is not ours."""
        routes = await self._routes(await self.sock.names_by_index())
        foreign = [(proto, r) for proto, r in routes if r.dst == dst and proto != self.protocol]
        if foreign:
            proto, other = foreign[0]
            raise PermanentError(
                f"{doing}: a route to {dst} (dev {other.dev or '-'}, protocol {proto}) exists in "
                f"table {self.table} and is not ours; leaving it alone"
            )

    async def remove(self, route: Route) -> None:
        """Delete our route to `route.dst` on `route.dev`; a route of another protocol is never matched."""
        index = await self.sock.index_of(route.dev)
        if index is None:
            log.debug("route %s: device %s is gone, and its routes with it", route.dst, route.dev)
            return
        try:
            await self.sock.ipr().route(
                "del",
                dst=str(route.dst),
                oif=index,
                family=family_of(route.dst),
                proto=self.protocol,
                table=self.table,
            )
        except NetlinkError as exc:
            if exc.code in _GONE:
                log.debug("route %s dev %s (ours) already absent", route.dst, route.dev)
                self._owned.discard(route.dst)
                return
            raise translate(exc, f"removing route {route.dst} dev {route.dev}{self.sock.where}") from exc
        self._owned.discard(route.dst)
        log.debug("removed route %s dev %s", route.dst, route.dev)
