"""Permanent neighbour entries and VXLAN FDB entries (a peer MAC behind a remote underlay address), read
and written in batches.

Only permanent entries are reported (learned ones are the kernel's). Removal is exact: a neighbour is
removed only while it still has the MAC we are told to remove, an FDB entry only for that MAC and dst,
so a remove that runs after the replacing add never deletes the new entry.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

from pyroute2.netlink.rtnl import RTM_GETNEIGH
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_NOARP, NUD_PERMANENT

from meshd.core.model import IPAddress
from meshd.core.state import FdbEntry, NeighborEntry
from meshd.netlink import (
    NetlinkSocket,
    batch_failure,
    family_of,
    netlink_errors,
)
from meshd.rtnl_msgs import NeighMsg, NeighRequest, decode_neigh, neigh_header

log = logging.getLogger(__name__)
T = TypeVar("T")

_GONE = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH})
NEIGH_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


def permanent_entry(msg: NeighMsg, index: int) -> tuple[IPAddress, str] | None:
    """(destination, MAC) of a permanent entry on the link `index` that has both, else None."""
    if msg.ifindex != index or not msg.state & NUD_PERMANENT or msg.dst is None or msg.mac is None:
        return None
    return msg.dst, msg.mac


async def _permanent_entries(sock: NetlinkSocket, family: int, dev: str) -> list[tuple[IPAddress, str]]:
    """(destination, lower-case MAC) of each permanent entry of `family` (AF_UNSPEC: neighbours of both
    IP families; AF_BRIDGE: FDB) on `dev`; none when `dev` does not exist."""
    index = await sock.index_of(dev)
    if index is None:
        return []
    with netlink_errors(
        f"listing {'FDB' if family == socket.AF_BRIDGE else 'neighbour'} entries{sock.where}"
    ):
        msgs = await sock.raw.dump(RTM_GETNEIGH, family)
    found = []
    for _, payload in msgs:
        if neigh_header(payload)[1] != index:
            continue
        msg = decode_neigh(payload)
        entry = permanent_entry(msg, index)
        if entry is not None and (family == socket.AF_BRIDGE or msg.family in NEIGH_FAMILIES):
            found.append(entry)
    return found


async def observe_neighbors(sock: NetlinkSocket, dev: str) -> frozenset[NeighborEntry]:
    entries = await _permanent_entries(sock, socket.AF_UNSPEC, dev)
    return frozenset(NeighborEntry(dev=dev, ip=ip, mac=mac) for ip, mac in entries)


async def observe_fdb(sock: NetlinkSocket, dev: str) -> frozenset[FdbEntry]:
    return frozenset(
        FdbEntry(mac=mac, dst=dst) for dst, mac in await _permanent_entries(sock, socket.AF_BRIDGE, dev)
    )


def _neigh(verb: str, index: int, entry: NeighborEntry) -> NeighRequest:
    return NeighRequest(verb, family_of(entry.ip), index, entry.ip, entry.mac.lower(), NUD_PERMANENT)


def _fdb(verb: str, index: int, entry: FdbEntry) -> NeighRequest:
    """A `bridge fdb` request for `entry` (a permanent, self entry) on the link `index`."""
    state = NUD_PERMANENT | NUD_NOARP
    return NeighRequest(verb, socket.AF_BRIDGE, index, entry.dst, entry.mac.lower(), state, NTF_SELF)


Doing = Callable[[], str]
"""What a request does, in words; formatted only for a failure or a debug log (a batch holds thousands)."""


async def _send(
    sock: NetlinkSocket, requests: Sequence[tuple[Doing, NeighRequest | None]], *, gone_ok: bool = False
) -> None:
    """Send the requests in one batch (None: its link is gone, and the entry with it); name every one
    that failed. `gone_ok`: removing what is already gone is no failure."""
    sent = [(doing, request) for doing, request in requests if request is not None]
    failed: list[tuple[str, int]] = []
    if sent:
        with netlink_errors(f"changing {len(sent)} neighbour/FDB entries{sock.where}"):
            codes = await sock.raw.batch([request for _, request in sent])
        debug = log.isEnabledFor(logging.DEBUG)
        for (doing, _), code in zip(sent, codes, strict=True):
            if code and not (gone_ok and code in _GONE):
                failed.append((doing() + sock.where, code))
            elif debug:
                log.debug("%s%s", doing(), " (already absent)" if code else "")
    if failed:
        raise batch_failure(failed)


async def _indexes(sock: NetlinkSocket, devs: Iterable[str]) -> dict[str, int | None]:
    return {dev: await sock.index_of(dev) for dev in set(devs)}


async def add_neighbors(sock: NetlinkSocket, entries: Sequence[NeighborEntry]) -> None:
    """`ip neigh replace IP lladdr MAC dev DEV nud permanent` for each: idempotent, fixes a changed MAC."""
    index = {dev: await sock.require_index(dev) for dev in {e.dev for e in entries}}
    await _send(sock, [(_doing("adding neighbour", e), _neigh("replace", index[e.dev], e)) for e in entries])


async def remove_neighbors(sock: NetlinkSocket, entries: Sequence[NeighborEntry]) -> None:
    """Remove each entry that still has the MAC we are told to remove."""
    entries = [replace(e, mac=e.mac.lower()) for e in entries]
    present = {e for dev in {e.dev for e in entries} for e in await observe_neighbors(sock, dev)}
    for e in entries:
        if e not in present:
            log.debug("neighbour %s → %s on %s already absent", e.ip, e.mac, e.dev)
    index = await _indexes(sock, (e.dev for e in entries))
    gone = [e for e in entries if e in present]
    await _send(
        sock,
        [(_doing("removing neighbour", e), _maybe(_neigh, "del", index[e.dev], e)) for e in gone],
        gone_ok=True,
    )


async def add_fdbs(sock: NetlinkSocket, dev: str, entries: Sequence[FdbEntry]) -> None:
    """`bridge fdb replace MAC dev DEV dst DST self permanent` for each.

    Replace, not append: for a unicast MAC the kernel ignores an append when the MAC already has another
    dst, so a peer whose underlay address changed would keep the stale one.
    """
    index = await sock.require_index(dev) if entries else 0
    await _send(sock, [(_fdb_doing("adding FDB entry", dev, e), _fdb("replace", index, e)) for e in entries])


async def remove_fdbs(sock: NetlinkSocket, dev: str, entries: Sequence[FdbEntry]) -> None:
    index = await sock.index_of(dev)
    await _send(
        sock,
        [(_fdb_doing("removing FDB entry", dev, e), _maybe(_fdb, "del", index, e)) for e in entries],
        gone_ok=True,
    )


def _maybe(
    make: Callable[[str, int, T], NeighRequest], verb: str, index: int | None, entry: T
) -> NeighRequest | None:
    return make(verb, index, entry) if index is not None else None


def _doing(what: str, entry: NeighborEntry) -> Doing:
    return lambda: f"{what} {entry.ip} → {entry.mac} on {entry.dev}"


def _fdb_doing(what: str, dev: str, entry: FdbEntry) -> Doing:
    return lambda: f"{what} {entry.mac} → {entry.dst} on {dev}"
