"""Guard routes over netlink: `unreachable DST proto 109 metric GUARD_METRIC` in the main table.

An unreachable route has no device, so nothing the kernel does to a link (wireguard-go dying, the link
deleted) takes it away; only a reboot or `meshd cleanup` does. Only routes with our protocol, type
unreachable and the guard metric are ours to remove: a route of anyone else is never matched.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence

from meshd.core.guard import GUARD_METRIC
from meshd.core.model import IPNetwork
from meshd.core.state import RTPROT_MESHD
from meshd.netlink import NetlinkSocket, batch_failure, netlink_errors
from meshd.rtnl_msgs import RTN_UNREACHABLE, RouteMsg, RouteRequest

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

    async def add_all(self, dsts: Sequence[IPNetwork]) -> None:
        """Add each guard, all in one batch. One that is there already is no error (a foreign route in its
        exact slot is reported and left alone); the ones that fail are named in one BatchError after the
        others are in."""
        codes = await self._batch("add", dsts)
        failed: list[tuple[str, int]] = []
        held: frozenset[IPNetwork] | None = None
        for dst, code in zip(dsts, codes, strict=True):
            if code == errno.EEXIST:
                held = await self.observe() if held is None else held
                if dst not in held:  # a foreign route holds that exact slot: never replaced
                    log.warning(
                        "guard %s: a route that is not ours has its slot (metric %d)", dst, GUARD_METRIC
                    )
            elif code:
                failed.append((f"adding guard {dst}{self.sock.where}", code))
            else:
                log.debug("guard unreachable %s metric %d (proto %d)", dst, GUARD_METRIC, self.protocol)
        if failed:
            raise batch_failure(failed)

    async def remove_all(self, dsts: Sequence[IPNetwork]) -> None:
        """Remove each of our guards, in one batch; one already gone is no error, a foreign route never
        matches."""
        codes = await self._batch("del", dsts)
        failed = [
            (f"removing guard {dst}{self.sock.where}", code)
            for dst, code in zip(dsts, codes, strict=True)
            if code and code not in _GONE
        ]
        if failed:
            raise batch_failure(failed)

    async def _batch(self, verb: str, dsts: Sequence[IPNetwork]) -> list[int]:
        requests = [
            RouteRequest(
                verb, dst, None, self.table, self.protocol, kind=RTN_UNREACHABLE, priority=GUARD_METRIC
            )
            for dst in dsts
        ]
        with netlink_errors(f"changing {len(requests)} guards{self.sock.where}"):
            return await self.sock.raw.batch(requests) if requests else []

    async def close(self) -> None:
        self.sock.close()
