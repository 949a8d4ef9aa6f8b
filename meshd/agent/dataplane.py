"""The node's dataplane (the `Dataplane` port): one WireGuard device, the fallback transports' links (through
their adapters), netlink entries and the owned route table, observed as one ActualState and changed by
applying diff actions in order. It decides nothing; it dispatches."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshd.core import actions as a
from meshd.core.guard import AddGuard, GuardTable, RemoveGuard
from meshd.core.model import IPNetwork
from meshd.core.ports import Applied, Links, RouteTable, WireGuardDevice
from meshd.core.state import ActualState, DeviceNames, ObservedIpip, ObservedWireGuard
from meshd.errors import PermanentError
from vxlan.ipip import IPIP
from vxlan.vxlan import VXLAN

log = logging.getLogger(__name__)


@dataclass
class Dataplane:
    names: DeviceNames
    links: Links
    routes: RouteTable
    wireguard: WireGuardDevice | None = None  # None: no WireGuard backend on this node
    ipip: bool = False  # the kernel has ipip: observe that link too
    guards: GuardTable | None = None  # Required guards (meshd.core.guard); None: none observed or made

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        self.routes.watch_networks(nets)

    async def observe(self) -> ActualState:
        ours, foreign = await self.routes.observe()
        vx = await self.links.observe_link(self.names.vxlan, VXLAN)
        ipip: ObservedIpip | None = None
        if self.ipip:
            ipip = await self.links.observe_link(self.names.ipip, IPIP)
        return ActualState(
            wireguard=await self._observe_wireguard(),
            vxlan=vx,
            fdb=await self.links.observe_fdb(self.names.vxlan) if vx else frozenset(),
            neighbors=await self.links.observe_neighbors(self.names.vxlan) if vx else frozenset(),
            ipip=ipip,
            routes=ours,
            foreign_routes=foreign,
            guards=await self.guards.observe() if self.guards is not None else frozenset(),
        )

    async def _observe_wireguard(self) -> ObservedWireGuard | None:
        wg = self.wireguard
        device = await wg.observe_device() if wg is not None else None
        if wg is None or device is None:
            return None
        return ObservedWireGuard(
            name=wg.name,
            public_key=device.public_key,
            listen_port=device.listen_port,
            mtu=await self.links.link_mtu(wg.name) or 0,
            addresses=await self.links.link_addresses(wg.name),
            peers=device.peers,
        )

    async def apply(self, actions: Sequence[a.Action]) -> Applied:
        """In order. A run of consecutive peer changes goes to the device as one batch."""
        peers: list[a.PeerAction] = []
        applied = Applied()
        for action in actions:
            log.info("%s", describe(action))
            if isinstance(action, a.AddPeer | a.UpdatePeer | a.RemovePeer):
                peers.append(action)
                continue
            if peers:
                await self._wg().apply_peers(peers)
                peers = []
            if isinstance(action, a.CreateVxlanDevice):
                applied = Applied(vxlan_mac=(await self.links.create_link(action.spec, VXLAN)).mac)
            else:
                await self._apply_one(action)
        if peers:
            await self._wg().apply_peers(peers)
        return applied

    def _wg(self) -> WireGuardDevice:
        if self.wireguard is None:
            raise PermanentError("a WireGuard action was planned on a node without a WireGuard backend")
        return self.wireguard

    async def _apply_one(self, action: a.Action) -> None:
        links, routes = self.links, self.routes
        match action:
            case a.CreateWireGuardDevice(spec):
                await self._wg().create(spec)
            case a.ConfigureWireGuardDevice(spec):
                await self._wg().configure(spec)
            case a.CreateIpipDevice(spec):
                await links.create_link(spec, IPIP)
            case a.SetLinkMtu(dev, mtu):
                await links.set_mtu(dev, mtu)
            case a.DeleteDevice(dev):
                if self.wireguard is not None and dev == self.wireguard.name:
                    await self.wireguard.delete()
                else:
                    await links.delete_link(dev)
            case a.AddAddress(dev, addr):
                await links.add_address(dev, addr)
            case a.RemoveAddress(dev, addr):
                await links.remove_address(dev, addr)
            case a.AddNeighbor(entry):
                await links.add_neighbor(entry)
            case a.RemoveNeighbor(entry):
                await links.remove_neighbor(entry)
            case a.AddFdb(dev, entry):
                await links.add_fdb(dev, entry)
            case a.RemoveFdb(dev, entry):
                await links.remove_fdb(dev, entry)
            case a.ReplaceRoute(route):
                await routes.replace(route)
            case a.RemoveRoute(route):
                await routes.remove(route)
            case AddGuard(dst) | RemoveGuard(dst):
                await self._guard(action, dst)

    async def _guard(self, action: a.Action, dst: IPNetwork) -> None:
        if self.guards is None:
            raise PermanentError(f"guarding {dst}: a guard was planned on a dataplane without a guard table")
        await (self.guards.add(dst) if isinstance(action, AddGuard) else self.guards.remove(dst))


def describe(action: a.Action) -> str:
    """One log line per kernel change, with the reason-bearing fields and never a private key."""
    match action:
        case a.CreateWireGuardDevice(spec) | a.ConfigureWireGuardDevice(spec):
            verb = "creating" if isinstance(action, a.CreateWireGuardDevice) else "configuring"
            return f"{verb} WireGuard device {spec.name} (port {spec.listen_port}, key {spec.public_key.short}...)"
        case a.AddPeer(p):
            ips = ",".join(sorted(map(str, p.allowed_ips)))
            return (
                f"adding peer {p.node or '?'} ({p.public_key.short}...) endpoint {p.endpoint} allowed {ips}"
            )
        case a.UpdatePeer(key, endpoint, allowed, keepalive, node):
            parts = [
                f"endpoint {endpoint}" if endpoint else "",
                f"keepalive {keepalive}" if keepalive is not None else "",
            ]
            if allowed is not None:
                parts.append("allowed " + ",".join(sorted(map(str, allowed))))
            return f"updating peer {node or '?'} ({key.short}...): " + " ".join(p for p in parts if p)
        case a.RemovePeer(key, node):
            return f"removing peer {node or '?'} ({key.short}...)"
        case a.CreateVxlanDevice(spec):
            return f"creating VXLAN device {spec.name} (vni {spec.vni}, port {spec.port}, local {spec.local})"
        case a.CreateIpipDevice(spec):
            return f"creating IPIP device {spec.name} (local {spec.local})"
        case a.AddNeighbor(n) | a.RemoveNeighbor(n):
            verb = "neighbour" if isinstance(action, a.AddNeighbor) else "removing neighbour"
            return f"{verb} {n.ip} lladdr {n.mac} dev {n.dev}"
        case a.AddFdb(dev, e) | a.RemoveFdb(dev, e):
            verb = "FDB entry" if isinstance(action, a.AddFdb) else "removing FDB entry"
            return f"{verb} {e.mac} dst {e.dst} dev {dev}"
        case a.SetLinkMtu(dev, mtu):
            return f"setting MTU {mtu} on {dev}"
        case a.AddAddress(dev, addr) | a.RemoveAddress(dev, addr):
            verb = "adding" if isinstance(action, a.AddAddress) else "removing"
            return f"{verb} address {addr} on {dev}"
        case a.DeleteDevice(dev, reason):
            return f"deleting link {dev} ({reason})"
        case a.ReplaceRoute(r):
            via = f" via {r.via}" if r.via else ""
            return f"routing {r.dst} dev {r.dev}{via}"
        case a.RemoveRoute(r):
            return f"removing route {r.dst} dev {r.dev}"
        case AddGuard(dst):
            return f"guarding {dst} (Required: unreachable unless its tunnel route is there)"
        case RemoveGuard(dst):
            return f"removing the guard of {dst} (not Required any more)"
    return f"{type(action).__name__}: " + ", ".join(f"{k}={v}" for k, v in _fields(action))


def _fields(action: object) -> list[tuple[str, object]]:
    return [(k, getattr(action, k)) for k in getattr(action, "__slots__", ())]
