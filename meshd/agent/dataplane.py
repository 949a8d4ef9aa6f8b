"""The node's dataplane (the `Dataplane` port): one WireGuard device, the fallback transports' links (through
their adapters), netlink entries and the owned route table, observed as one ActualState and changed by
applying diff actions in order. It decides nothing; it dispatches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
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
            up=await self.links.link_up(wg.name),
        )

    async def apply(self, actions: Sequence[a.Action]) -> Applied:
        """In order. A run of consecutive actions of one kind (peer changes; route replaces; FDB adds on
        one device; ...) goes to the kernel as one batch."""
        applied = Applied()
        for run in _runs(actions):
            _log_run(run)
            first = run[0]
            if isinstance(first, a.AddPeer | a.UpdatePeer | a.RemovePeer):
                await self._wg().apply_peers(
                    [x for x in run if isinstance(x, a.AddPeer | a.UpdatePeer | a.RemovePeer)]
                )
            elif isinstance(first, a.CreateVxlanDevice):
                applied = Applied(vxlan_mac=(await self.links.create_link(first.spec, VXLAN)).mac)
            elif not await self._apply_batch(first, run):
                await self._apply_one(first)
        return applied

    async def _apply_batch(self, first: a.Action, run: Sequence[a.Action]) -> bool:
        """Apply a run of entry or route changes as one batch; False when `first` is of no such kind."""
        links, routes = self.links, self.routes
        match first:
            case a.AddNeighbor():
                await links.add_neighbors([x.entry for x in run if isinstance(x, a.AddNeighbor)])
            case a.RemoveNeighbor():
                await links.remove_neighbors([x.entry for x in run if isinstance(x, a.RemoveNeighbor)])
            case a.AddFdb(dev):
                await links.add_fdbs(dev, [x.entry for x in run if isinstance(x, a.AddFdb)])
            case a.RemoveFdb(dev):
                await links.remove_fdbs(dev, [x.entry for x in run if isinstance(x, a.RemoveFdb)])
            case a.ReplaceRoute():
                await routes.replace_all([x.route for x in run if isinstance(x, a.ReplaceRoute)])
            case a.RemoveRoute():
                await routes.remove_all([x.route for x in run if isinstance(x, a.RemoveRoute)])
            case AddGuard():
                await self._guards().add_all([x.dst for x in run if isinstance(x, AddGuard)])
            case RemoveGuard():
                await self._guards().remove_all([x.dst for x in run if isinstance(x, RemoveGuard)])
            case _:
                return False
        return True

    def _wg(self) -> WireGuardDevice:
        if self.wireguard is None:
            raise PermanentError("a WireGuard action was planned on a node without a WireGuard backend")
        return self.wireguard

    async def _apply_one(self, action: a.Action) -> None:
        links = self.links
        match action:
            case a.CreateWireGuardDevice(spec):
                await self._wg().create(spec)
            case a.ConfigureWireGuardDevice(spec):
                await self._wg().configure(spec)
            case a.CreateIpipDevice(spec):
                await links.create_link(spec, IPIP)
            case a.SetLinkMtu(dev, mtu):
                await links.set_mtu(dev, mtu)
            case a.SetLinkUp(dev):
                await links.set_up(dev)
            case a.DeleteDevice(dev):
                if self.wireguard is not None and dev == self.wireguard.name:
                    await self.wireguard.delete()
                else:
                    await links.delete_link(dev)
            case a.AddAddress(dev, addr):
                await links.add_address(dev, addr)
            case a.RemoveAddress(dev, addr):
                await links.remove_address(dev, addr)

    def _guards(self) -> GuardTable:
        if self.guards is None:
            raise PermanentError("a guard was planned on a dataplane without a guard table")
        return self.guards


_BATCHED = (
    a.AddNeighbor, a.RemoveNeighbor, a.AddFdb, a.RemoveFdb, a.ReplaceRoute, a.RemoveRoute, AddGuard, RemoveGuard,
)  # fmt: skip


def _run_key(action: a.Action) -> object:
    """Consecutive actions with one key go in one batch; an action of another kind is a run of its own."""
    if isinstance(action, a.AddPeer | a.UpdatePeer | a.RemovePeer):
        return "peers"
    if isinstance(action, _BATCHED):
        return (type(action), getattr(action, "dev", None))
    return object()


LOG_EACH = 50
"""A batch of up to this many changes is logged one line per change at INFO; a larger one (a node's first
pass in a big cluster) in one INFO line, each change at DEBUG."""


def _log_run(run: Sequence[a.Action]) -> None:
    if len(run) > LOG_EACH:
        log.info(
            "%d changes in one batch (%s), the first: %s", len(run), type(run[0]).__name__, describe(run[0])
        )
    level = logging.INFO if len(run) <= LOG_EACH else logging.DEBUG
    if log.isEnabledFor(level):
        for action in run:
            log.log(level, "%s", describe(action))


def _runs(actions: Sequence[a.Action]) -> Iterator[list[a.Action]]:
    run: list[a.Action] = []
    for action in actions:
        if run and _run_key(run[0]) != _run_key(action):
            yield run
            run = []
        run.append(action)
    if run:
        yield run


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
        case a.SetLinkUp(dev):
            return f"setting link {dev} up (it was down)"
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
    names = [f.name for f in dataclasses.fields(action)] if dataclasses.is_dataclass(action) else []
    return [(k, getattr(action, k)) for k in names]
