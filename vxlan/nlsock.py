"""One rtnetlink socket per adapter instance, in one network namespace, and netlink errors as ours.

Opening a socket in another namespace forks, so the socket is opened once (lazily, inside the running
event loop) and kept until `close()`. A missing namespace raises instead of being created (`flags=0`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.model import IPAddress
from meshd.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ENOBUFS})
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
IFA_F_NODAD = 0x02


def family_of(addr: IPAddress | ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """The address family as data: AF_INET or AF_INET6."""
    return 2 if addr.version == 4 else 10


def describe_errno(code: int) -> str:
    return f"{os.strerror(code)} (errno {code})"


def translate(exc: NetlinkError, doing: str) -> TransientError | PermanentError:
    """Our error for a netlink failure, saying what was being done."""
    cls = TransientError if exc.code in TRANSIENT_ERRNOS else PermanentError
    return cls(f"{doing}: {describe_errno(exc.code)}")


@contextmanager
def netlink_errors(doing: str) -> Iterator[None]:
    """Raise our TransientError/PermanentError (from the NetlinkError) for any netlink failure."""
    try:
        yield
    except NetlinkError as exc:
        raise translate(exc, doing) from exc


class NetlinkSocket:
    """A lazily opened AsyncIPRoute in `netns` (None: the namespace this process lives in)."""

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None

    @property
    def where(self) -> str:
        return f" in netns {self.netns}" if self.netns else ""

    def ipr(self) -> Any:
        if self._ipr is None:
            ipr = AsyncIPRoute() if self.netns is None else AsyncIPRoute(netns=self.netns, flags=0)
            try:
                _ = ipr.socket  # opened lazily: open it now, so a missing namespace fails here
            except FileNotFoundError as exc:
                ipr.close()
                raise PermanentError(f"network namespace {self.netns} does not exist") from exc
            self._ipr = ipr
        return self._ipr

    async def dump(self, kind: str, **filters: Any) -> AsyncIterator[Any]:
        """Dump `kind` (link, addr, neigh, fdb, route) messages, filtered like pyroute2 does."""
        method = getattr(self.ipr(), kind)
        with netlink_errors(f"listing {kind} entries{self.where}"):
            async for msg in await method("dump", **filters):
                yield msg

    async def index_of(self, name: str) -> int | None:
        """The ifindex of link `name`, None when it does not exist (one RTM_GETLINK by name, not a dump:
        this runs for every route, neighbour and FDB change)."""
        msg = await self.get_link(name)
        return int(msg["index"]) if msg is not None else None

    async def require_index(self, name: str) -> int:
        index = await self.index_of(name)
        if index is None:
            raise PermanentError(f"link {name} does not exist{self.where}")
        return index

    async def get_link(self, name: str) -> Any | None:
        """The RTM_NEWLINK message of link `name`, None when it does not exist."""
        try:
            msgs = await self.ipr().link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise translate(exc, f"reading link {name}{self.where}") from exc
        return msgs[0] if msgs else None

    async def names_by_index(self) -> dict[int, str]:
        return {int(m["index"]): str(m.get("IFLA_IFNAME")) async for m in self.dump("link")}

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
