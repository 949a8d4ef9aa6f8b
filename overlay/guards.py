"""Guard routes over netlink: `unreachable DST proto 109 metric GUARD_METRIC` in the main table.

An unreachable route has no device, so nothing the kernel does to a link (wireguard-go dying, the link
deleted) takes it away; only a reboot or `meshd cleanup` does. Only routes with our protocol, type
unreachable and the guard metric are ours to remove: a route of anyone else is never matched.
"""

from __future__ import annotations

import errno
import logging

from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.guard import GUARD_METRIC
from meshd.core.model import IPNetwork
from meshd.core.state import RTPROT_MESHD
from meshd.netlink import NetlinkSocket, family_of, translate
from meshd.rtnl_msgs import RTN_UNREACHABLE, RouteMsg

log = logging.getLogger(__name__)

_GONE = frozenset({errno.ESRCH, errno.ENOENT})


class NetlinkGuards:
    """Our guard routes in one table of one network namespace (None: this process's namespace)."""

    def __init__(self, *, netns: str | None = None, table: int = 254, protocol: int = RTPROT_MESHD) -> None:
        self.sock = NetlinkSocket(netns=netns)
        self.table = table
        self.protocol = protocol

    async def observe(self) -> frozenset[IPNetwork]:
        return frozenset(msg.dst for msg in await self.sock.routes() if self.is_guard(msg))

    def is_guard(self, msg: RouteMsg) -> bool:
        """Whether a route message is one of our guards: our table, protocol, type and metric."""
        return (
            msg.table == self.table
            and msg.protocol == self.protocol
            and msg.kind == RTN_UNREACHABLE
            and msg.priority == GUARD_METRIC
        )

    async def add(self, dst: IPNetwork) -> None:
        try:
            await self._send("add", dst)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise translate(exc, f"adding guard {dst}{self.sock.where}") from exc
            if dst not in await self.observe():  # a foreign route holds that exact slot: never replaced
                log.warning("guard %s: a route that is not ours has its slot (metric %d)", dst, GUARD_METRIC)
            return
        log.debug("guard unreachable %s metric %d (proto %d)", dst, GUARD_METRIC, self.protocol)

    async def remove(self, dst: IPNetwork) -> None:
        try:
            await self._send("del", dst)
        except NetlinkError as exc:
            if exc.code in _GONE:
                log.debug("guard %s already absent", dst)
                return
            raise translate(exc, f"removing guard {dst}{self.sock.where}") from exc

    async def _send(self, verb: str, dst: IPNetwork) -> None:
        await self.sock.ipr().route(
            verb,
            dst=str(dst),
            family=family_of(dst),
            type=RTN_UNREACHABLE,
            proto=self.protocol,
            table=self.table,
            priority=GUARD_METRIC,
        )

    async def close(self) -> None:
        self.sock.close()
