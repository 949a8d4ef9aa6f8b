"""Desired and observed kernel state: what the planner wants and what the backends see. Pure values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from keys.values import PublicKey
from meshd.core.model import Endpoint, IPAddress, IPNetwork, Transport

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class DeviceNames:
    wireguard: str = "meshd0"
    vxlan: str = "meshd-vxlan"
    ipip: str = "meshd-ipip"

    @property
    def rotation_helper(self) -> str:
        """The key rotation's helper WireGuard link: the main link's name plus `-r` (at most 15 characters)."""
        return f"{self.wireguard[:13]}-r"

    def owned(self) -> frozenset[str]:
        """Every link meshd owns; the helper link carries pod routes during a rotation, so it is one of them."""
        return frozenset((self.wireguard, self.vxlan, self.ipip, self.rotation_helper))


@dataclass(frozen=True, slots=True)
class WireGuardDeviceSpec:
    """The WireGuard link. The private key stays with the backend; `public_key` detects a foreign key."""

    name: str
    public_key: PublicKey
    listen_port: int
    mtu: int
    addresses: frozenset[IPInterface] = frozenset()


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One WireGuard peer as we want it. `endpoint` None: let the kernel learn it (we do not pin it)."""

    public_key: PublicKey
    endpoint: Endpoint | None
    allowed_ips: frozenset[IPNetwork]
    persistent_keepalive: int = 0
    node: str = ""  # the node name, for logs and status only; never compared with the kernel


@dataclass(frozen=True, slots=True)
class VxlanDeviceSpec:
    """The VXLAN link: VNI `vni` over UDP `port`, from the underlay address `local`. Name, VNI, port and
    local are its identity: a change of one recreates the link; MTU and addresses are fixed in place."""

    name: str
    vni: int
    port: int
    local: IPAddress
    mtu: int
    addresses: frozenset[IPInterface] = frozenset()


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """A VXLAN forwarding entry on the VXLAN device: frames for `mac` go to the underlay address `dst`."""

    mac: str
    dst: IPAddress


@dataclass(frozen=True, slots=True, order=True)
class NeighborEntry:
    """A permanent neighbour entry on `dev`: the peer's overlay gateway address `ip` has `mac`."""

    dev: str
    ip: IPAddress
    mac: str


@dataclass(frozen=True, slots=True)
class IpipDeviceSpec:
    """The IPIP link, from the underlay address `local`. Name and local are its identity: a change of
    either recreates the link; MTU and addresses are fixed in place."""

    name: str
    local: IPAddress
    mtu: int
    addresses: frozenset[IPInterface] = frozenset()


RTPROT_MESHD = 109
"""Route protocol number marking the routes meshd owns (`ip route ... proto 109`). Only these are removed."""


@dataclass(frozen=True, slots=True)
class Route:
    """A route to a peer's pod CIDR. Routes are keyed by `dst`: one transport per destination."""

    dst: IPNetwork
    dev: str
    via: IPAddress | None = None
    onlink: bool = False


@dataclass(frozen=True, slots=True)
class PairDecision:
    """How traffic to one peer node travels, and why. What `meshd status` and the metrics show."""

    node: str
    transport: Transport
    reason: str
    pod_cidrs: tuple[IPNetwork, ...] = ()  # the peer's pod CIDRs (routed over `transport` unless NONE)


@dataclass(frozen=True, slots=True)
class Problem:
    """A conflict the planner resolved deterministically (duplicate key, overlapping CIDRs, ...)."""

    kind: str
    nodes: tuple[str, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class DesiredState:
    wireguard: WireGuardDeviceSpec | None = None
    peers: tuple[PeerSpec, ...] = ()  # sorted by public key
    vxlan: VxlanDeviceSpec | None = None
    fdb: frozenset[FdbEntry] = frozenset()
    neighbors: frozenset[NeighborEntry] = frozenset()
    ipip: IpipDeviceSpec | None = None
    routes: frozenset[Route] = frozenset()
    pairs: tuple[PairDecision, ...] = ()  # sorted by node name
    problems: tuple[Problem, ...] = ()
    guards: frozenset[IPNetwork] = frozenset()  # pod CIDRs never sent in clear (meshd.core.guard)


@dataclass(frozen=True, slots=True)
class ObservedPeer:
    """One peer as the device reports it. The diff compares its endpoint (only where we pin one), allowed
    IPs and keepalive with the PeerSpec; the handshake time and byte counts are for status and metrics."""

    public_key: PublicKey
    endpoint: Endpoint | None
    allowed_ips: frozenset[IPNetwork]
    persistent_keepalive: int = 0
    last_handshake: float | None = None  # unix seconds; None = never
    rx_bytes: int = 0
    tx_bytes: int = 0
    has_psk: bool = False  # holds a preshared key (meshd.pq); the key itself is never read out


@dataclass(frozen=True, slots=True)
class WireGuardReading:
    """One read of a WireGuard device (one UAPI get or genl dump): our key as it holds it (None: no private
    key set), its listen port and its peers. The private key itself is reduced to its public half."""

    public_key: PublicKey | None
    listen_port: int
    peers: tuple[ObservedPeer, ...]


@dataclass(frozen=True, slots=True)
class ObservedWireGuard:
    name: str
    public_key: PublicKey | None  # None when the device has no private key yet
    listen_port: int
    mtu: int
    addresses: frozenset[IPInterface] = frozenset()
    peers: tuple[ObservedPeer, ...] = ()
    up: bool = True  # IFF_UP


@dataclass(frozen=True, slots=True)
class ObservedVxlan:
    """The VXLAN link as netlink reports it. `local` None: the link has no local address, so its identity
    matches no spec and it is recreated. `mac` is what peers put in their FDB and neighbour entries."""

    name: str
    vni: int
    port: int
    local: IPAddress | None
    mtu: int
    mac: str
    addresses: frozenset[IPInterface] = frozenset()
    up: bool = True  # IFF_UP


@dataclass(frozen=True, slots=True)
class ObservedIpip:
    """The IPIP link as netlink reports it. `local` None: the link has no local address, so its identity
    matches no spec and it is recreated."""

    name: str
    local: IPAddress | None
    mtu: int
    addresses: frozenset[IPInterface] = frozenset()
    up: bool = True  # IFF_UP


@dataclass(frozen=True, slots=True)
class ActualState:
    """What the kernel holds of ours. `routes` are only routes with our protocol number; `foreign_routes`
    are routes of others whose destination overlaps a pod CIDR we route (left alone, reported)."""

    wireguard: ObservedWireGuard | None = None
    vxlan: ObservedVxlan | None = None
    fdb: frozenset[FdbEntry] = frozenset()
    neighbors: frozenset[NeighborEntry] = frozenset()
    ipip: ObservedIpip | None = None
    routes: frozenset[Route] = frozenset()
    foreign_routes: frozenset[Route] = frozenset()
    guards: frozenset[IPNetwork] = frozenset()  # destinations of our guard routes (meshd.core.guard)
