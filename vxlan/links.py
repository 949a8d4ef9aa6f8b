"""`Links` through rtnetlink: a transport's own link (through its `LinkAdapter`: VXLAN, IPIP), MTU,
addresses, neighbour and FDB entries.

A link with one of our names that is not of the kind we expect is never changed or deleted: observing
it raises PermanentError. Adds are idempotent; removing what is not there is a no-op (logged at DEBUG).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from meshd.core.devices import IFF_UP
from meshd.core.model import IPAddress
from meshd.core.state import FdbEntry, IPInterface, NeighborEntry
from meshd.core.transport import LinkAdapter, LinkSpec
from meshd.errors import MeshdError, PermanentError, TransientError
from meshd.netlink import NetlinkSocket, OnSocket, family_of, netlink_errors, translate
from vxlan import neighbors

__all__ = ["NetlinkLinks", "ipip_supported", "link_kind"]

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT", bound=LinkSpec)
ObservedT = TypeVar("ObservedT")
PROBE_NAME = "meshd-ipprobe"

_MISSING_ADDRESS = frozenset({errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT})


def link_kind(msg: Any) -> str | None:
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


class NetlinkLinks(OnSocket):
    """Links, addresses, neighbours and FDB entries in one network namespace (None: our own)."""

    def __init__(self, *, netns: str | None = None) -> None:
        self.sock = NetlinkSocket(netns=netns)

    # --- links -------------------------------------------------------------------------------------

    async def link_mtu(self, name: str) -> int | None:
        msg = await self.sock.get_link(name)
        return int(msg.get("IFLA_MTU")) if msg is not None else None

    async def link_addresses(self, name: str) -> frozenset[IPInterface]:
        """Addresses on `name`, without the IPv6 link-local ones the kernel assigns by itself."""
        index = await self.sock.index_of(name)
        if index is None:
            return frozenset()
        found: set[IPInterface] = set()
        async for msg in self.sock.dump("addr", index=index):
            iface = ipaddress.ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
            if not (iface.version == 6 and iface.ip.is_link_local):
                found.add(iface)
        return frozenset(found)

    async def link_up(self, name: str) -> bool:
        msg = await self.sock.get_link(name)
        return msg is not None and bool(msg["flags"] & IFF_UP)

    async def set_up(self, name: str) -> None:
        await self.sock.set_up(name)

    async def set_mtu(self, name: str, mtu: int) -> None:
        index = await self.sock.require_index(name)
        with netlink_errors(f"setting MTU {mtu} on {name}{self.sock.where}"):
            await self.sock.ipr().link("set", index=index, mtu=mtu)
        log.debug("set MTU of %s to %d", name, mtu)

    async def _addr(self, command: str, index: int, address: IPInterface, **extra: int) -> None:
        """One `ip addr` request for `address` on the link `index`."""
        await self.sock.ipr().addr(
            command,
            index=index,
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
            family=family_of(address.ip),
            **extra,
        )

    async def add_address(self, name: str, address: IPInterface) -> None:
        index = await self.sock.require_index(name)
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        with netlink_errors(f"adding address {address} to {name}{self.sock.where}"):
            await self._addr("replace", index, address, **extra)
        log.debug("address %s on %s", address, name)

    async def remove_address(self, name: str, address: IPInterface) -> None:
        index = await self.sock.index_of(name)
        if index is None:
            log.debug("not removing %s from %s: no such link", address, name)
            return
        try:
            await self._addr("del", index, address)
        except NetlinkError as exc:
            if exc.code in _MISSING_ADDRESS:
                log.debug("address %s was not on %s", address, name)
                return
            raise translate(exc, f"removing address {address} from {name}{self.sock.where}") from exc
        log.debug("removed address %s from %s", address, name)

    async def delete_link(self, name: str) -> None:
        if await self.sock.delete_link(name):
            log.info("deleted link %s", name)

    async def _bring_up(self, name: str, mtu: int, addresses: frozenset[IPInterface]) -> None:
        for address in sorted(addresses, key=str):
            await self.add_address(name, address)
        index = await self.sock.require_index(name)
        with netlink_errors(f"bringing {name} up{self.sock.where}"):
            await self.sock.ipr().link("set", index=index, mtu=mtu, state="up")

    async def _underlay_index(self, local: IPAddress, *, doing: str) -> int:
        """The link holding the underlay address `local` (the VXLAN/IPIP device's lower link)."""
        async for msg in self.sock.dump("addr", family=family_of(local)):
            if ipaddress.ip_address(msg.get("IFA_ADDRESS")) == local:
                return int(msg["index"])
        raise PermanentError(f"{doing}: no link holds the underlay address {local}{self.sock.where}")

    # --- a transport's own link ----------------------------------------------------------------------

    async def observe_link(self, name: str, adapter: LinkAdapter[Any, ObservedT]) -> ObservedT | None:
        """Link `name` as the transport observes it; one of another kind is not ours to touch."""
        msg = await self.sock.get_link(name)
        if msg is None:
            return None
        kind = link_kind(msg)
        if kind != adapter.kind:
            raise PermanentError(f"link {name} exists and is not ours (kind {kind}){self.sock.where}")
        return adapter.observed(name, msg, await self.link_addresses(name))

    async def create_link(self, spec: SpecT, adapter: LinkAdapter[SpecT, ObservedT]) -> ObservedT:
        """Create (or adopt) the link, set its addresses and MTU, bring it up; returns it as observed."""
        doing = f"creating {adapter.label} link {spec.name} (local {spec.local}){self.sock.where}"
        existing = await self.observe_link(spec.name, adapter)
        if existing is not None:
            problem = adapter.mismatch(existing, spec)
            if problem is not None:
                raise PermanentError(f"{doing}: {problem}")
            log.debug("%s link %s already exists", adapter.label, spec.name)
        else:
            attributes = adapter.add_attributes(spec, await self._underlay_index(spec.local, doing=doing))
            with netlink_errors(doing, lacking=adapter.kind):
                await self.sock.ipr().link(
                    "add", ifname=spec.name, kind=adapter.kind, mtu=spec.mtu, **attributes
                )
            log.info("created %s link %s (%s)", adapter.label, spec.name, doing)
        await self._bring_up(spec.name, spec.mtu, spec.addresses)
        created = await self.observe_link(spec.name, adapter)
        if created is None:
            raise TransientError(f"{doing}: the link vanished right after it was created")
        return created

    # --- neighbours and FDB ------------------------------------------------------------------------

    async def observe_neighbors(self, dev: str) -> frozenset[NeighborEntry]:
        return await neighbors.observe_neighbors(self.sock, dev)

    async def add_neighbors(self, entries: Sequence[NeighborEntry]) -> None:
        await neighbors.add_neighbors(self.sock, entries)

    async def remove_neighbors(self, entries: Sequence[NeighborEntry]) -> None:
        await neighbors.remove_neighbors(self.sock, entries)

    async def observe_fdb(self, dev: str) -> frozenset[FdbEntry]:
        return await neighbors.observe_fdb(self.sock, dev)

    async def add_fdbs(self, dev: str, entries: Sequence[FdbEntry]) -> None:
        await neighbors.add_fdbs(self.sock, dev, entries)

    async def remove_fdbs(self, dev: str, entries: Sequence[FdbEntry]) -> None:
        await neighbors.remove_fdbs(self.sock, dev, entries)


async def ipip_supported(*, netns: str | None = None) -> bool:
    """Whether this kernel can create IPIP links.

    Probes by creating (and at once deleting) a link named `meshd-ipprobe` in `netns` (None: this
    process's namespace), which also loads the module where it is available.
    """
    async with NetlinkSocket(netns=netns) as sock:
        try:
            await sock.add_link(PROBE_NAME, "ipip")
        except PermanentError as exc:
            if isinstance(exc.__cause__, NetlinkError) and exc.__cause__.code == errno.EEXIST:
                return True
            log.debug("ipip probe failed: %s", exc)
            return False
        with contextlib.suppress(MeshdError):
            await sock.delete_link(PROBE_NAME)
        return True
