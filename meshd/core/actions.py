"""Kernel actions: the verbs `diff` produces and the backends apply. Each is idempotent when applied."""

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
class CreateWireGuardDevice:
    spec: WireGuardDeviceSpec


@dataclass(frozen=True, slots=True)
class ConfigureWireGuardDevice:
    """Set private key (the backend's own), listen port and MTU on an existing device."""

    spec: WireGuardDeviceSpec


@dataclass(frozen=True, slots=True)
class CreateVxlanDevice:
    spec: VxlanDeviceSpec


@dataclass(frozen=True, slots=True)
class CreateIpipDevice:
    spec: IpipDeviceSpec


@dataclass(frozen=True, slots=True)
class SetLinkMtu:
    dev: str
    mtu: int


@dataclass(frozen=True, slots=True)
class DeleteDevice:
    dev: str
    reason: str


@dataclass(frozen=True, slots=True)
class AddAddress:
    dev: str
    address: IPInterface


@dataclass(frozen=True, slots=True)
class RemoveAddress:
    dev: str
    address: IPInterface


@dataclass(frozen=True, slots=True)
class AddPeer:
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
    public_key: PublicKey
    node: str = ""


@dataclass(frozen=True, slots=True)
class AddNeighbor:
    entry: NeighborEntry


@dataclass(frozen=True, slots=True)
class RemoveNeighbor:
    entry: NeighborEntry


@dataclass(frozen=True, slots=True)
class AddFdb:
    dev: str
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class RemoveFdb:
    dev: str
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class ReplaceRoute:
    """Add the route, or atomically move an existing owned route with the same destination."""

    route: Route


@dataclass(frozen=True, slots=True)
class RemoveRoute:
    route: Route


PeerAction = AddPeer | UpdatePeer | RemovePeer
WireGuardAction = CreateWireGuardDevice | ConfigureWireGuardDevice | PeerAction
LinkAction = CreateVxlanDevice | CreateIpipDevice | SetLinkMtu | DeleteDevice | AddAddress | RemoveAddress
NeighborAction = AddNeighbor | RemoveNeighbor | AddFdb | RemoveFdb
RouteAction = ReplaceRoute | RemoveRoute
Action = WireGuardAction | LinkAction | NeighborAction | RouteAction | GuardAction
