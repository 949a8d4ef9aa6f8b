"""A behavioural fake of one node's kernel dataplane: links, addresses, WireGuard peers, FDB and
neighbour entries, and our routes. It acts like the kernel, not like a stub:

- creating an existing link fails (EEXIST); anything on a missing link fails (ENODEV);
- removing a missing route, peer, FDB entry, neighbour or address fails (ENOENT-like);
- deleting a link takes its addresses, routes, FDB and neighbour entries with it, never a guard (an
  unreachable route has no device); adding a guard that is there fails (EEXIST), as `ip route add` does;
- ReplaceRoute, AddNeighbor (keyed by device and address) and AddFdb (keyed by MAC: one destination
  per unicast MAC, as `bridge fdb replace` leaves it) are upserts;
- a WireGuard allowed IP belongs to one peer: giving it to a peer takes it from any other (like the kernel);
- UpdatePeer changes only the fields it carries; AddPeer of a known key updates it, as `wg set` does;
- a new VXLAN link gets a deterministic MAC; a new WireGuard link has no MAC and no peers.

Every successful action counts one write in `writes`. `learn_endpoint` simulates roaming (not a write).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from keys.values import PublicKey
from meshd.core import actions as a
from meshd.core.guard import AddGuard, GuardAction, RemoveGuard
from meshd.core.model import Endpoint, IPAddress, IPNetwork
from meshd.core.state import (
    ActualState,
    DeviceNames,
    FdbEntry,
    IPInterface,
    NeighborEntry,
    ObservedIpip,
    ObservedPeer,
    ObservedVxlan,
    ObservedWireGuard,
    PeerSpec,
    Route,
)

WIREGUARD_DEFAULT_MTU = 1420


def kernel_error(code: int, what: str) -> OSError:
    """An OSError like the kernel's (OSError picks the subclass: FileExistsError, FileNotFoundError...)."""
    return OSError(code, f"{os.strerror(code)}: {what}")


def vxlan_mac(name: str, vni: int, local: IPAddress | None) -> str:
    """A deterministic, locally administered unicast MAC for a new VXLAN link."""
    digest = hashlib.sha256(f"{name}/{vni}/{local}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


@dataclass
class FakeLink:
    name: str
    kind: str  # "wireguard" | "vxlan" | "ipip"
    mtu: int
    addresses: set[IPInterface] = field(default_factory=set)
    public_key: PublicKey | None = None  # wireguard
    listen_port: int = 0  # wireguard
    peers: dict[PublicKey, ObservedPeer] = field(default_factory=dict)  # wireguard
    vni: int = 0  # vxlan
    port: int = 0  # vxlan
    local: IPAddress | None = None  # vxlan, ipip
    mac: str = ""  # vxlan
    up: bool = True


class FakeDataplane:
    """The kernel of one node, as far as meshd owns it."""

    def __init__(self, names: DeviceNames = DeviceNames(), *, ipip_supported: bool = True) -> None:  # noqa: B008
        self.names = names
        self.ipip_supported = ipip_supported
        self.links: dict[str, FakeLink] = {}
        self.fdb: dict[str, dict[str, FdbEntry]] = {}  # per VXLAN link, keyed by MAC
        self.neighbors: dict[tuple[str, IPAddress], NeighborEntry] = {}
        self.routes: dict[IPNetwork, Route] = {}
        self.guards: set[IPNetwork] = set()  # unreachable routes: no device, so no link takes them away
        self.writes = 0

    # -- what the agent sees ---------------------------------------------------------------------
    def observe(self) -> ActualState:
        wg = self.links.get(self.names.wireguard)
        vx = self.links.get(self.names.vxlan)
        ipip = self.links.get(self.names.ipip)
        return ActualState(
            wireguard=self._observe_wireguard(wg) if wg and wg.kind == "wireguard" else None,
            vxlan=self._observe_vxlan(vx) if vx and vx.kind == "vxlan" else None,
            fdb=frozenset(self.fdb.get(vx.name, {}).values()) if vx else frozenset(),
            neighbors=frozenset(n for n in self.neighbors.values() if vx and n.dev == vx.name),
            ipip=ObservedIpip(ipip.name, ipip.local, ipip.mtu, frozenset(ipip.addresses), ipip.up)
            if ipip
            else None,
            routes=frozenset(self.routes.values()),
            guards=frozenset(self.guards),
        )

    @staticmethod
    def _observe_wireguard(link: FakeLink) -> ObservedWireGuard:
        peers = tuple(link.peers[k] for k in sorted(link.peers))
        return ObservedWireGuard(
            link.name, link.public_key, link.listen_port, link.mtu, frozenset(link.addresses), peers, link.up
        )

    @staticmethod
    def _observe_vxlan(link: FakeLink) -> ObservedVxlan:
        addresses = frozenset(link.addresses)
        return ObservedVxlan(
            link.name, link.vni, link.port, link.local, link.mtu, link.mac, addresses, link.up
        )

    # -- things the kernel does by itself ----------------------------------------------------------
    def set_down(self, name: str) -> None:
        """Someone set the link down: the kernel drops every route through it."""
        self._link(name).up = False
        self.routes = {dst: r for dst, r in self.routes.items() if r.dev != name}

    def learn_endpoint(self, public_key: PublicKey, endpoint: Endpoint) -> None:
        """The peer roamed: the kernel learned a new endpoint from an authenticated packet."""
        link = self._link(self.names.wireguard, "wireguard")
        peer = self._peer(link, public_key)
        link.peers[public_key] = replace(peer, endpoint=endpoint)

    # -- writes ----------------------------------------------------------------------------------
    def apply(self, actions: Iterable[a.Action]) -> None:
        """Apply in order; the first failure raises and leaves what was done before it in place."""
        for action in actions:
            self._apply_one(action)
            self.writes += 1

    def _apply_one(self, action: a.Action) -> None:
        if isinstance(action, a.AddPeer | a.UpdatePeer | a.RemovePeer):
            self._apply_peer(action)
        elif isinstance(action, a.AddNeighbor | a.RemoveNeighbor | a.AddFdb | a.RemoveFdb):
            self._apply_neighbor(action)
        elif isinstance(action, a.ReplaceRoute | a.RemoveRoute):
            self._apply_route(action)
        elif isinstance(action, AddGuard | RemoveGuard):
            self._apply_guard(action)
        else:
            self._apply_link(action)

    def _apply_link(self, action: a.Action) -> None:
        match action:
            case a.CreateWireGuardDevice(spec):
                self._create(FakeLink(spec.name, "wireguard", WIREGUARD_DEFAULT_MTU))  # as the kernel does
                self.links[spec.name].public_key = spec.public_key
                self.links[spec.name].listen_port = spec.listen_port
            case a.ConfigureWireGuardDevice(spec):
                link = self._link(spec.name, "wireguard")
                link.public_key, link.listen_port = spec.public_key, spec.listen_port
            case a.CreateVxlanDevice(spec):
                mac = vxlan_mac(spec.name, spec.vni, spec.local)
                self._create(
                    FakeLink(
                        spec.name, "vxlan", spec.mtu, vni=spec.vni, port=spec.port, local=spec.local, mac=mac
                    )
                )
            case a.CreateIpipDevice(spec):
                if not self.ipip_supported:
                    raise kernel_error(errno.EOPNOTSUPP, f"link add {spec.name} type ipip")
                self._create(FakeLink(spec.name, "ipip", spec.mtu, local=spec.local))
            case a.SetLinkMtu(dev, mtu):
                self._link(dev).mtu = mtu
            case a.SetLinkUp(dev):
                self._link(dev).up = True
            case a.DeleteDevice(dev):
                self._delete(dev)
            case a.AddAddress(dev, addr):
                link = self._link(dev)
                if addr in link.addresses:
                    raise kernel_error(errno.EEXIST, f"address {addr} on {dev}")
                link.addresses.add(addr)
            case a.RemoveAddress(dev, addr):
                link = self._link(dev)
                if addr not in link.addresses:
                    raise kernel_error(errno.EADDRNOTAVAIL, f"address {addr} on {dev}")
                link.addresses.remove(addr)

    def _apply_peer(self, action: a.WireGuardAction) -> None:
        match action:
            case a.AddPeer(spec):
                self._upsert_peer(spec)
            case a.UpdatePeer():
                self._update_peer(action)
            case a.RemovePeer(key):
                link = self._link(self.names.wireguard, "wireguard")
                self._peer(link, key)
                del link.peers[key]

    def _apply_neighbor(self, action: a.NeighborAction) -> None:
        match action:
            case a.AddNeighbor(entry):
                self._link(entry.dev)
                self.neighbors[(entry.dev, entry.ip)] = entry
            case a.RemoveNeighbor(entry):
                if (entry.dev, entry.ip) not in self.neighbors:
                    raise kernel_error(errno.ENOENT, f"neighbour {entry.ip} dev {entry.dev}")
                del self.neighbors[(entry.dev, entry.ip)]
            case a.AddFdb(dev, entry):
                self._link(dev, "vxlan")
                self.fdb.setdefault(dev, {})[entry.mac] = entry
            case a.RemoveFdb(dev, entry):
                if self.fdb.get(dev, {}).get(entry.mac) != entry:
                    raise kernel_error(errno.ENOENT, f"fdb {entry.mac} dst {entry.dst} dev {dev}")
                del self.fdb[dev][entry.mac]

    def _apply_route(self, action: a.RouteAction) -> None:
        match action:
            case a.ReplaceRoute(route):
                if not self._link(route.dev).up:
                    raise kernel_error(errno.ENETDOWN, f"route {route.dst} dev {route.dev}")
                self.routes[route.dst] = route
            case a.RemoveRoute(route):
                have = self.routes.get(route.dst)
                if have is None or have.dev != route.dev:
                    raise kernel_error(errno.ESRCH, f"route {route.dst} dev {route.dev}")
                del self.routes[route.dst]

    def _apply_guard(self, action: GuardAction) -> None:
        if isinstance(action, AddGuard):
            if action.dst in self.guards:
                raise kernel_error(errno.EEXIST, f"unreachable {action.dst}")
            self.guards.add(action.dst)
        elif action.dst not in self.guards:
            raise kernel_error(errno.ESRCH, f"unreachable {action.dst}")
        else:
            self.guards.remove(action.dst)

    def _create(self, link: FakeLink) -> None:
        if link.name in self.links:
            raise kernel_error(errno.EEXIST, f"link {link.name}")
        self.links[link.name] = link

    def _delete(self, dev: str) -> None:
        self._link(dev)
        del self.links[dev]
        self.fdb.pop(dev, None)
        self.neighbors = {k: n for k, n in self.neighbors.items() if n.dev != dev}
        self.routes = {k: r for k, r in self.routes.items() if r.dev != dev}

    def _link(self, dev: str, kind: str | None = None) -> FakeLink:
        link = self.links.get(dev)
        if link is None or (kind is not None and link.kind != kind):
            raise kernel_error(errno.ENODEV, f"link {dev}" + (f" of kind {kind}" if kind else ""))
        return link

    @staticmethod
    def _peer(link: FakeLink, key: PublicKey) -> ObservedPeer:
        peer = link.peers.get(key)
        if peer is None:
            raise kernel_error(errno.ENOENT, f"peer {key.short}... on {link.name}")
        return peer

    def _upsert_peer(self, spec: PeerSpec) -> None:
        link = self._link(self.names.wireguard, "wireguard")
        old = link.peers.get(spec.public_key)
        endpoint = spec.endpoint if spec.endpoint is not None else (old.endpoint if old else None)
        self._take_allowed_ips(link, spec.public_key, spec.allowed_ips)
        link.peers[spec.public_key] = ObservedPeer(
            spec.public_key, endpoint, spec.allowed_ips, spec.persistent_keepalive
        )

    def _update_peer(self, change: a.UpdatePeer) -> None:
        link = self._link(self.names.wireguard, "wireguard")
        peer = self._peer(link, change.public_key)
        if change.endpoint is not None:
            peer = replace(peer, endpoint=change.endpoint)
        if change.allowed_ips is not None:
            self._take_allowed_ips(link, change.public_key, change.allowed_ips)
            peer = replace(peer, allowed_ips=change.allowed_ips)
        if change.persistent_keepalive is not None:
            peer = replace(peer, persistent_keepalive=change.persistent_keepalive)
        link.peers[change.public_key] = peer

    @staticmethod
    def _take_allowed_ips(link: FakeLink, owner: PublicKey, allowed: frozenset[IPNetwork]) -> None:
        """An allowed IP belongs to one peer: the kernel moves it from any other peer that had it."""
        for key, peer in list(link.peers.items()):
            if key != owner and peer.allowed_ips & allowed:
                link.peers[key] = replace(peer, allowed_ips=peer.allowed_ips - allowed)
