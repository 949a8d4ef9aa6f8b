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
    __slots__ = ()


class ConfigureWireGuardDevice(_WireGuardSpec):
    """Set private key (the backend's own), listen port and MTU on an existing device."""

    __slots__ = ()


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
class _Address:
    dev: str
    address: IPInterface


class AddAddress(_Address):
    __slots__ = ()


class RemoveAddress(_Address):
    __slots__ = ()


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
class _Neighbor:
    entry: NeighborEntry


class AddNeighbor(_Neighbor):
    __slots__ = ()


class RemoveNeighbor(_Neighbor):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Fdb:
    dev: str
    entry: FdbEntry


class AddFdb(_Fdb):
    __slots__ = ()


class RemoveFdb(_Fdb):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Route:
    route: Route


class ReplaceRoute(_Route):
    """Add the route, or atomically move an existing owned route with the same destination."""

    __slots__ = ()


class RemoveRoute(_Route):
    __slots__ = ()


PeerAction = AddPeer | UpdatePeer | RemovePeer
WireGuardAction = CreateWireGuardDevice | ConfigureWireGuardDevice | PeerAction
LinkAction = CreateVxlanDevice | CreateIpipDevice | SetLinkMtu | DeleteDevice | AddAddress | RemoveAddress
NeighborAction = AddNeighbor | RemoveNeighbor | AddFdb | RemoveFdb
RouteAction = ReplaceRoute | RemoveRoute
Action = WireGuardAction | LinkAction | NeighborAction | RouteAction | GuardAction
