"""`Links` through rtnetlink: the VXLAN (and IPIP) link, MTU, addresses, neighbour and FDB entries.

A link with one of our names that is not of the kind we expect is never changed or deleted: observing
it raises PermanentError. Adds are idempotent; removing what is not there is a no-op (logged at DEBUG).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.model import IPAddress
from meshd.core.state import (
    FdbEntry,
    IPInterface,
    IpipDeviceSpec,
    NeighborEntry,
    ObservedIpip,
    ObservedVxlan,
    VxlanDeviceSpec,
)
from meshd.errors import PermanentError
from vxlan import ipip, neighbors
from vxlan.ipip import ipip_supported
from vxlan.nlsock import IFA_F_NODAD, NetlinkSocket, family_of, netlink_errors, translate

__all__ = ["NetlinkLinks", "ipip_supported", "link_kind"]

log = logging.getLogger(__name__)

_MISSING_ADDRESS = frozenset({errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT})


def link_kind(msg: Any) -> str | None:
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def link_data(msg: Any) -> Any:
    return msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")


class NetlinkLinks:
    """Links, addresses, neighbours and FDB entries in one network namespace (None: our own)."""

    def __init__(self, *, netns: str | None = None) -> None:
        self.sock = NetlinkSocket(netns=netns)

    async def close(self) -> None:
        self.sock.close()

    async def __aenter__(self) -> NetlinkLinks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    async def set_mtu(self, name: str, mtu: int) -> None:
        index = await self.sock.require_index(name)
        with netlink_errors(f"setting MTU {mtu} on {name}{self.sock.where}"):
            await self.sock.ipr().link("set", index=index, mtu=mtu)
        log.debug("set MTU of %s to %d", name, mtu)

    async def add_address(self, name: str, address: IPInterface) -> None:
        index = await self.sock.require_index(name)
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        with netlink_errors(f"adding address {address} to {name}{self.sock.where}"):
            await self.sock.ipr().addr(
                "replace",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                family=family_of(address.ip),
                **extra,
            )
        log.debug("address %s on %s", address, name)

    async def remove_address(self, name: str, address: IPInterface) -> None:
        index = await self.sock.index_of(name)
        if index is None:
            log.debug("not removing %s from %s: no such link", address, name)
            return
        try:
            await self.sock.ipr().addr(
                "del",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                family=family_of(address.ip),
            )
        except NetlinkError as exc:
            if exc.code in _MISSING_ADDRESS:
                log.debug("address %s was not on %s", address, name)
                return
            raise translate(exc, f"removing address {address} from {name}{self.sock.where}") from exc
        log.debug("removed address %s from %s", address, name)

    async def delete_link(self, name: str) -> None:
        index = await self.sock.index_of(name)
        if index is None:
            log.debug("link %s already absent", name)
            return
        try:
            await self.sock.ipr().link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                log.debug("link %s already absent", name)
                return
            raise translate(exc, f"deleting link {name}{self.sock.where}") from exc
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

    # --- VXLAN -------------------------------------------------------------------------------------

    async def observe_vxlan(self, name: str) -> ObservedVxlan | None:
        msg = await self.sock.get_link(name)
        if msg is None:
            return None
        kind = link_kind(msg)
        if kind != "vxlan":
            raise PermanentError(f"link {name} exists and is not ours (kind {kind}){self.sock.where}")
        data = link_data(msg)
        local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
        return ObservedVxlan(
            name=name,
            vni=int(data.get("IFLA_VXLAN_ID")),
            port=int(data.get("IFLA_VXLAN_PORT")),
            local=ipaddress.ip_address(local) if local else None,
            mtu=int(msg.get("IFLA_MTU")),
            mac=str(msg.get("IFLA_ADDRESS")).lower(),
            addresses=await self.link_addresses(name),
        )

    async def create_vxlan(self, spec: VxlanDeviceSpec) -> None:
        doing = f"creating VXLAN link {spec.name} (vni {spec.vni}, local {spec.local}){self.sock.where}"
        existing = await self.observe_vxlan(spec.name)
        if existing is not None:
            if (existing.vni, existing.port, existing.local) != (spec.vni, spec.port, spec.local):
                raise PermanentError(f"{doing}: a different VXLAN link {spec.name} exists: {existing}")
            log.debug("VXLAN link %s already exists", spec.name)
        else:
            lower = await self._underlay_index(spec.local, doing=doing)
            local_attr = "vxlan_local" if spec.local.version == 4 else "vxlan_local6"
            with netlink_errors(doing):
                await self.sock.ipr().link(
                    "add",
                    ifname=spec.name,
                    kind="vxlan",
                    vxlan_id=spec.vni,
                    vxlan_port=spec.port,
                    vxlan_link=lower,
                    vxlan_learning=0,
                    mtu=spec.mtu,
                    **{local_attr: str(spec.local)},
                )
            log.info("created VXLAN link %s (vni %d, port %d)", spec.name, spec.vni, spec.port)
        await self._bring_up(spec.name, spec.mtu, spec.addresses)

    # --- IPIP --------------------------------------------------------------------------------------

    async def observe_ipip(self, name: str) -> ObservedIpip | None:
        msg = await self.sock.get_link(name)
        if msg is None:
            return None
        return ipip.observed(name, msg, addresses=await self.link_addresses(name), where=self.sock.where)

    async def create_ipip(self, spec: IpipDeviceSpec) -> None:
        if await self.observe_ipip(spec.name) is None:
            doing = f"creating IPIP link {spec.name} (local {spec.local}){self.sock.where}"
            lower = await self._underlay_index(spec.local, doing=doing)
            await ipip.create(self.sock, spec, lower=lower, doing=doing)
            log.info("created IPIP link %s (local %s)", spec.name, spec.local)
        await self._bring_up(spec.name, spec.mtu, spec.addresses)

    # --- neighbours and FDB ------------------------------------------------------------------------

    async def observe_neighbors(self, dev: str) -> frozenset[NeighborEntry]:
        return await neighbors.observe_neighbors(self.sock, dev)

    async def add_neighbor(self, entry: NeighborEntry) -> None:
        await neighbors.add_neighbor(self.sock, entry)

    async def remove_neighbor(self, entry: NeighborEntry) -> None:
        await neighbors.remove_neighbor(self.sock, entry)

    async def observe_fdb(self, dev: str) -> frozenset[FdbEntry]:
        return await neighbors.observe_fdb(self.sock, dev)

    async def add_fdb(self, dev: str, entry: FdbEntry) -> None:
        await neighbors.add_fdb(self.sock, dev, entry)

    async def remove_fdb(self, dev: str, entry: FdbEntry) -> None:
        await neighbors.remove_fdb(self.sock, dev, entry)
