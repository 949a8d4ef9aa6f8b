"""The one way meshd opens netlink sockets (rtnetlink and the `wireguard` generic-netlink family), in one
network namespace, and the one translation of netlink errors into meshd's.

Opening a socket in another namespace forks, so an adapter opens its socket once (lazily, inside the
running event loop) and keeps it until `close()`. A missing namespace raises PermanentError instead of
being created (`flags=0`). No raw NetlinkError leaves an adapter: `translate` says what was being done.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import AsyncWireGuard
from pyroute2.netlink.rtnl import RTM_GETROUTE
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from meshd.core.model import IPAddress
from meshd.errors import (
    BatchError,
    PermanentBatchError,
    PermanentError,
    TransientBatchError,
    TransientError,
    UnsupportedError,
)
from meshd.rtnl import RawRtnl
from meshd.rtnl_msgs import RouteMsg, decode_route

log = logging.getLogger(__name__)

TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.EINTR})
NOT_SUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EAFNOSUPPORT})


def family_of(addr: IPAddress | ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """The address family as data: AF_INET or AF_INET6."""
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def describe_errno(code: int) -> str:
    return f"{os.strerror(code)} (errno {code})"


def translate(
    exc: NetlinkError, doing: str, *, lacking: str | None = None, absent: frozenset[int] = NOT_SUPPORTED
) -> TransientError | PermanentError:
    """Our error for a netlink failure, saying what was being done. With `lacking` (a kernel feature such
    as "ipip"), an errno in `absent` means the kernel lacks it: UnsupportedError."""
    code = int(exc.code or 0)
    if code in TRANSIENT_ERRNOS:
        return TransientError(f"{doing}: {describe_errno(code)}")
    if lacking is not None and code in absent:
        return UnsupportedError(f"kernel lacks {lacking}: {doing} failed with {describe_errno(code)}")
    return PermanentError(f"{doing}: {describe_errno(code)}")


def batch_failure(failed: Sequence[tuple[str, int]]) -> BatchError:
    """One error naming each failed request of a batch, given as (what it was doing, errno)."""
    text = tuple(f"{doing}: {describe_errno(code)}" for doing, code in failed)
    if all(code in TRANSIENT_ERRNOS for _, code in failed):
        return TransientBatchError(text)
    return PermanentBatchError(text)


@contextmanager
def netlink_errors(doing: str, *, lacking: str | None = None) -> Iterator[None]:
    """Raise our TransientError/PermanentError (from the NetlinkError) for any netlink failure."""
    try:
        yield
    except NetlinkError as exc:
        raise translate(exc, doing, lacking=lacking) from exc


async def wireguard_socket(netns: str | None) -> Any:
    """A bound `wireguard` generic-netlink socket in `netns`. NetlinkError ENOENT when the family is absent
    (no kernel WireGuard); PermanentError when the namespace does not exist."""
    try:
        sock = AsyncWireGuard(netns=netns, flags=0) if netns else AsyncWireGuard()
    except FileNotFoundError as exc:
        raise PermanentError(f"network namespace {netns} does not exist") from exc
    sock.module_err_level = "debug"  # absence is reported by us, not logged as an error
    try:
        await sock.setup_endpoint()
    except BaseException:
        sock.close()
        raise
    return sock


class NetlinkSocket:
    """A lazily opened AsyncIPRoute in `netns` (None: the namespace this process lives in), and beside it
    a plain rtnetlink socket (`raw`) for batches and large dumps."""

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self.raw = RawRtnl(netns)

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
        """The ifindex of link `name`, None when it does not exist: in our own namespace one ioctl, else
        one RTM_GETLINK by name, not a dump (this runs for every batch of route, neighbour and FDB
        changes; pyroute2 decodes the whole link message, milliseconds)."""
        if self.netns is None:
            try:
                return socket.if_nametoindex(name)
            except OSError:
                return None
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

    async def add_link(self, name: str, kind: str, *, lacking: str | None = None) -> None:
        """`ip link add NAME type KIND`; UnsupportedError (with `lacking`) when the kernel lacks the kind."""
        with netlink_errors(f"creating {kind} link {name}{self.where}", lacking=lacking):
            await self.ipr().link("add", ifname=name, kind=kind)

    async def set_up(self, name: str) -> bool:
        """Set the link up. Returns True when it was down (a change), False when it already was up."""
        msg = await self.get_link(name)
        if msg is None:
            raise PermanentError(f"link {name} does not exist{self.where}, cannot set it up")
        if msg["flags"] & IFF_UP:
            log.debug("link %s is already up", name)
            return False
        log.info("setting link %s up", name)
        with netlink_errors(f"setting link {name} up{self.where}"):
            await self.ipr().link("set", index=int(msg["index"]), state="up")
        return True

    async def delete_link(self, name: str) -> bool:
        """Delete the link. Returns False when it was already gone."""
        index = await self.index_of(name)
        if index is None:
            log.debug("link %s already absent", name)
            return False
        try:
            await self.ipr().link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                log.debug("link %s already absent", name)
                return False
            raise translate(exc, f"deleting link {name}{self.where}") from exc
        return True

    async def routes(self) -> list[RouteMsg]:
        """Every IPv4 and IPv6 route of every table, decoded (one fast dump per family)."""
        found: list[RouteMsg] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            with netlink_errors(f"listing routes{self.where}"):
                msgs = await self.raw.dump(RTM_GETROUTE, family)
            found.extend(m for m in map(decode_route, (payload for _, payload in msgs)) if m is not None)
        return found

    async def names_by_index(self) -> dict[int, str]:
        with netlink_errors(f"listing links{self.where}"):
            return await self.raw.link_names()

    def close(self) -> None:
        self.raw.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> NetlinkSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class OnSocket:
    """For an adapter over one `NetlinkSocket` in `self.sock`: `close()` closes it, `async with` too."""

    sock: NetlinkSocket

    async def close(self) -> None:
        self.sock.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
