"""Permanent neighbour entries and VXLAN FDB entries (a peer MAC behind a remote underlay address).

Only permanent entries are reported (learned ones are the kernel's). Removal is exact: a neighbour is
removed only while it still has the MAC we are told to remove, an FDB entry only for that MAC and dst,
so a remove that runs after the replacing add never deletes the new entry.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.model import IPAddress
from meshd.core.state import FdbEntry, NeighborEntry
from meshd.netlink import (
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    NetlinkSocket,
    family_of,
    netlink_errors,
    translate,
)

log = logging.getLogger(__name__)

_GONE = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH})


def _permanent(msg: Any) -> bool:
    return bool(msg["state"] & NUD_PERMANENT)


async def _permanent_entries(
    sock: NetlinkSocket, kind: str, dev: str
) -> AsyncIterator[tuple[Any, IPAddress, str]]:
    """(message, destination, lower-case MAC) of each permanent `kind` (neigh, fdb) entry on `dev` that has
    both; none when `dev` does not exist."""
    index = await sock.index_of(dev)
    if index is None:
        return
    async for msg in sock.dump(kind, ifindex=index):
        dst, mac = msg.get("NDA_DST"), msg.get("NDA_LLADDR")
        if msg["ifindex"] == index and _permanent(msg) and dst and mac:
            yield msg, ipaddress.ip_address(dst), str(mac).lower()


async def observe_neighbors(sock: NetlinkSocket, dev: str) -> frozenset[NeighborEntry]:
    return frozenset(
        [
            NeighborEntry(dev=dev, ip=ip, mac=mac)
            async for msg, ip, mac in _permanent_entries(sock, "neigh", dev)
            if msg["family"] in (socket.AF_INET, socket.AF_INET6)
        ]
    )


async def add_neighbor(sock: NetlinkSocket, entry: NeighborEntry) -> None:
    """`ip neigh replace IP lladdr MAC dev DEV nud permanent`: idempotent, and fixes a changed MAC."""
    index = await sock.require_index(entry.dev)
    with netlink_errors(f"adding neighbour {entry.ip} → {entry.mac} on {entry.dev}{sock.where}"):
        await sock.ipr().neigh(
            "replace",
            ifindex=index,
            dst=str(entry.ip),
            lladdr=entry.mac.lower(),
            state=NUD_PERMANENT,
            family=family_of(entry.ip),
        )
    log.debug("neighbour %s → %s on %s", entry.ip, entry.mac, entry.dev)


async def remove_neighbor(sock: NetlinkSocket, entry: NeighborEntry) -> None:
    entry = replace(entry, mac=entry.mac.lower())
    if entry not in await observe_neighbors(sock, entry.dev):
        log.debug("neighbour %s → %s on %s already absent", entry.ip, entry.mac, entry.dev)
        return
    index = await sock.require_index(entry.dev)
    try:
        await sock.ipr().neigh("del", ifindex=index, dst=str(entry.ip), family=family_of(entry.ip))
    except NetlinkError as exc:
        if exc.code in _GONE:
            log.debug("neighbour %s on %s already absent", entry.ip, entry.dev)
            return
        raise translate(
            exc, f"removing neighbour {entry.ip} → {entry.mac} on {entry.dev}{sock.where}"
        ) from exc
    log.debug("removed neighbour %s → %s on %s", entry.ip, entry.mac, entry.dev)


async def observe_fdb(sock: NetlinkSocket, dev: str) -> frozenset[FdbEntry]:
    return frozenset(
        [FdbEntry(mac=mac, dst=dst) async for _, dst, mac in _permanent_entries(sock, "fdb", dev)]
    )


async def _fdb(sock: NetlinkSocket, command: str, index: int, entry: FdbEntry) -> None:
    """One `bridge fdb` request for `entry` (a permanent, self entry) on the link `index`."""
    await sock.ipr().neigh(
        command,
        family=socket.AF_BRIDGE,
        ifindex=index,
        lladdr=entry.mac.lower(),
        dst=str(entry.dst),
        state=NUD_PERMANENT | NUD_NOARP,
        flags=NTF_SELF,
    )


async def add_fdb(sock: NetlinkSocket, dev: str, entry: FdbEntry) -> None:
    """`bridge fdb replace MAC dev DEV dst DST self permanent`.

    Replace, not append: for a unicast MAC the kernel ignores an append when the MAC already has another
    dst, so a peer whose underlay address changed would keep the stale one.
    """
    index = await sock.require_index(dev)
    with netlink_errors(f"adding FDB entry {entry.mac} → {entry.dst} on {dev}{sock.where}"):
        await _fdb(sock, "replace", index, entry)
    log.debug("FDB entry %s → %s on %s", entry.mac, entry.dst, dev)


async def remove_fdb(sock: NetlinkSocket, dev: str, entry: FdbEntry) -> None:
    entry = replace(entry, mac=entry.mac.lower())
    if entry not in await observe_fdb(sock, dev):
        log.debug("FDB entry %s → %s on %s already absent", entry.mac, entry.dst, dev)
        return
    index = await sock.require_index(dev)
    try:
        await _fdb(sock, "del", index, entry)
    except NetlinkError as exc:
        if exc.code in _GONE:
            log.debug("FDB entry %s → %s on %s already absent", entry.mac, entry.dst, dev)
            return
        raise translate(exc, f"removing FDB entry {entry.mac} → {entry.dst} on {dev}{sock.where}") from exc
    log.debug("removed FDB entry %s → %s on %s", entry.mac, entry.dst, dev)
