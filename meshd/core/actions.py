"""Kernel actions: the verbs `diff` produces and the backends apply. Each is idempotent when applied.

A pair of verbs on the same object (add and remove an address, an FDB entry, ...) shares one frozen
dataclass base: each verb is a class of its own (actions of two verbs never compare equal), its fields the
base's."""

from __future__ import annotations

from dataclasses import dataclass

from keys.values import PublicKey
from meshd.core.guard import GuardAction
from meshd.core.model import Endpoint, IPNetwork
from meshd.core.state import (
    FdbEntry,
    IPInterface,
    IpipDeviceSpec,
    NeighborEntry,
    PeerSpec,
    Route,
    VxlanDeviceSpec,
    WireGuardDeviceSpec,
)


@dataclass(frozen=True, slots=True)
class _WireGuardSpec:
    spec: WireGuardDeviceSpec


class CreateWireGuardDevice(_WireGuardSpec):
    """Create the WireGuard link (kernel) or start or adopt wireguard-go (userspace), then configure it.
    The backend holds the private key; the spec's public key only tells whether a found device is ours."""

    __slots__ = ()


class ConfigureWireGuardDevice(_WireGuardSpec):
    """Set private key (the backend's own), listen port and MTU on an existing device."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CreateVxlanDevice:
    """Create or adopt the VXLAN link with its addresses and MTU, and set it up. The backend reports its
    MAC, which goes into this node's record: peers point their FDB and neighbour entries at it."""

    spec: VxlanDeviceSpec


@dataclass(frozen=True, slots=True)
class CreateIpipDevice:
    """Create or adopt the IPIP link with its addresses and MTU, and set it up. A kernel without the ipip
    module makes the backend raise UnsupportedError."""

    spec: IpipDeviceSpec


@dataclass(frozen=True, slots=True)
class SetLinkMtu:
    """Change the MTU of a link we keep. A link whose identity changed (e.g. the VNI) is not fixed in
    place: it is deleted and created again."""

    dev: str
    mtu: int


@dataclass(frozen=True, slots=True)
class SetLinkUp:
    """Set one of our links up again (an operator, or an agent killed while creating it, left it down: the
    kernel then drops the routes through it, and refuses to add them)."""

    dev: str


@dataclass(frozen=True, slots=True)
class DeleteDevice:
    """Delete one of our links (wireguard-go exits with its link); with it go its addresses and routes."""

    dev: str
    reason: str  # why, for the log: "no longer wanted" or "recreating: ..." with what changed


@dataclass(frozen=True, slots=True)
class _Address:
    dev: str
    address: IPInterface


class AddAddress(_Address):
    """Add an address to a link; one that is there already is not an error."""

    __slots__ = ()


class RemoveAddress(_Address):
    """Remove an address from one of our links that is no longer wanted there. A link that is recreated
    loses its addresses with it: they are not removed one by one."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AddPeer:
    """Add one WireGuard peer with its endpoint, allowed IPs and keepalive. A run of peer changes goes to
    the device in as few writes as the backend allows."""

    peer: PeerSpec


@dataclass(frozen=True, slots=True)
class UpdatePeer:
    """Change one peer in place. A field left None is not touched; `allowed_ips` replaces that peer's list."""

    public_key: PublicKey
    endpoint: Endpoint | None = None
    allowed_ips: frozenset[IPNetwork] | None = None
    persistent_keepalive: int | None = None
    node: str = ""


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Remove one WireGuard peer, and with it the allowed IPs that route to it inside the device."""

    public_key: PublicKey
    node: str = ""  # the node name, for the log only


@dataclass(frozen=True, slots=True)
class _Neighbor:
    entry: NeighborEntry


class AddNeighbor(_Neighbor):
    """Add or fix a permanent neighbour entry (batched with the adds next to it)."""

    __slots__ = ()


class RemoveNeighbor(_Neighbor):
    """Remove a neighbour entry, only while it still has the MAC we gave it. A run of removes goes to the
    kernel in one batch."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Fdb:
    dev: str
    entry: FdbEntry


class AddFdb(_Fdb):
    """Add or fix a static FDB entry on the VXLAN link `dev`: frames for the peer's MAC go to its underlay
    address. A run of adds on one device goes to the kernel in one batch."""

    __slots__ = ()


class RemoveFdb(_Fdb):
    """Remove the exact (MAC, dst) FDB entry from `dev` (batched with the removes on `dev` next to it)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Route:
    route: Route


class ReplaceRoute(_Route):
    """Add the route, or atomically move an existing owned route with the same destination. A switch of
    transport thus never leaves the destination without a route."""

    __slots__ = ()


class RemoveRoute(_Route):
    """Remove one of our routes (protocol 109); a foreign route is never touched."""

    __slots__ = ()


PeerAction = AddPeer | UpdatePeer | RemovePeer
WireGuardAction = CreateWireGuardDevice | ConfigureWireGuardDevice | PeerAction
LinkAction = (
    CreateVxlanDevice | CreateIpipDevice | SetLinkMtu | SetLinkUp | DeleteDevice | AddAddress | RemoveAddress
)
NeighborAction = AddNeighbor | RemoveNeighbor | AddFdb | RemoveFdb
RouteAction = ReplaceRoute | RemoveRoute
Action = WireGuardAction | LinkAction | NeighborAction | RouteAction | GuardAction
