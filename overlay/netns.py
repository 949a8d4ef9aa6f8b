"""Link operations and command lines in an optional named network namespace, without blocking the loop.

`netns=None` means the namespace the agent runs in. A named namespace must exist: pyroute2 is opened
with `flags=0` so a missing one is an error (FileNotFoundError), never silently created.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Sequence

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshd.errors import PermanentError

log = logging.getLogger(__name__)

IFF_UP = 0x1


def ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` as run inside `netns` (through `ip netns exec`), or unchanged for the current namespace."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


@contextlib.asynccontextmanager
async def iproute(netns: str | None) -> AsyncIterator[AsyncIPRoute]:
    ipr = AsyncIPRoute(netns=netns, flags=0) if netns else AsyncIPRoute()
    try:
        async with ipr:
            yield ipr
    except FileNotFoundError as exc:
        raise PermanentError(f"network namespace {netns!r} does not exist") from exc


async def _index(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


async def link_exists(netns: str | None, name: str) -> bool:
    async with iproute(netns) as ipr:
        return await _index(ipr, name) is not None


async def link_add(netns: str | None, name: str, kind: str) -> None:
    """Add a link of `kind` (NetlinkError passes through: EOPNOTSUPP means the kernel lacks `kind`)."""
    async with iproute(netns) as ipr:
        await ipr.link("add", ifname=name, kind=kind)


async def link_up(netns: str | None, name: str) -> bool:
    """Set the link up. Returns True when it was down (a change), False when it already was up."""
    async with iproute(netns) as ipr:
        index = await _index(ipr, name)
        if index is None:
            raise PermanentError(f"link {name} does not exist, cannot set it up")
        links = await ipr.link("get", index=index)
        if links and links[0]["flags"] & IFF_UP:
            log.debug("link %s is already up", name)
            return False
        log.info("setting link %s up", name)
        await ipr.link("set", index=index, state="up")
        return True


async def link_delete(netns: str | None, name: str) -> bool:
    """Delete the link. Returns False when it was already gone."""
    async with iproute(netns) as ipr:
        index = await _index(ipr, name)
        if index is None:
            log.debug("link %s is already gone", name)
            return False
        try:
            await ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        return True
