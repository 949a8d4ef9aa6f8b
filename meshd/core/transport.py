"""The transport seam, after Kilo's `encapsulation.Encapsulator`: each transport (WireGuard, VXLAN, IPIP) is
one module implementing `Encapsulation`, and the planner, the diff and the dataplane ask it instead of
branching on the transport. Pure: no I/O, and no module behind this protocol imports pyroute2 at import.

What stays generic (never a transport's business): route ownership by protocol number, the route diff, the
make-before-break order of the diff's groups, and the symmetric cluster-wide conflict decisions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from meshd.core.conflicts import ClusterView
from meshd.core.devices import DeviceChanges
from meshd.core.interned import interned
from meshd.core.model import IPAddress, IPNetwork, LocalNode, MeshConfig, Node, Transport
from meshd.core.state import (
    ActualState,
    DesiredState,
    DeviceNames,
    FdbEntry,
    IPInterface,
    NeighborEntry,
    PairDecision,
    PeerSpec,
    Problem,
    Route,
)

SpecT_contra = TypeVar("SpecT_contra", contravariant=True)
ObservedT = TypeVar("ObservedT")


@dataclass(frozen=True, slots=True)
class PairPlan:
    """The decision for one remote node, plus every transport the pair could use (standby paths)."""

    peer: Node
    transport: Transport
    reason: str
    usable: frozenset[Transport] = (
        frozenset()
    )  # transports with no blocker: their per-peer entries stay ready
    excluded: bool = False  # left out of the mesh by a conflict: nothing at all for this pair
    problem: str | None = None  # Problem kind when the pair gets no pod route for a non-conflict reason
    decision: PairDecision = field(init=False, compare=False, repr=False)
    """What status and metrics show; made once, so a plan that keeps the pair keeps this object too."""

    def __post_init__(self) -> None:
        decision = PairDecision(self.peer.name, self.transport, self.reason, self.peer.pod_cidrs)
        object.__setattr__(self, "decision", decision)


@dataclass(frozen=True, slots=True)
class PairEntries:
    """What one pair adds to a transport's per-key tables of the desired state (the planner unions them)."""

    peers: tuple[PeerSpec, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    neighbors: tuple[NeighborEntry, ...] = ()


NO_ENTRIES = PairEntries()


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What every transport's plan reads besides the pairs."""

    local: LocalNode
    config: MeshConfig
    names: DeviceNames
    addresses: frozenset[IPInterface]  # every overlay device's addresses: our pod CIDRs' gateways

    def is_fallback(self, transport: Transport) -> bool:
        """`transport` is the configured fallback (its device exists whatever the pairs decide)."""
        return self.config.fallback.transport is transport


@dataclass(frozen=True)
class Named:
    """A transport's names: its value, its netlink link kind, and how messages call it."""

    transport: Transport
    kind: str
    label: str


class Encapsulation(Protocol):
    """One transport: what it needs of a pair, its device, its per-peer entries and routes, its diff."""

    @property
    def transport(self) -> Transport: ...

    def blocker(self, local: LocalNode, peer: Node, view: ClusterView) -> str | None:
        """Why the pair cannot use this transport (capabilities, published values, conflicts), or None.
        Only symmetric facts may decide, so that both ends of a pair agree."""

    def device(self, state: DesiredState, ctx: PlanContext) -> DesiredState:
        """`state` with this transport's device filled in."""

    def entries(self, pair: PairPlan, ctx: PlanContext) -> PairEntries:
        """This transport's per-peer entries for one pair (standby ones included), a function of the pair
        and `ctx` alone: the desired tables are the union of every pair's entries."""

    def route(self, peer: Node, cidr: IPNetwork, names: DeviceNames) -> Route | Problem:
        """The route to one pod CIDR of a pair that uses this transport, or why there is none."""

    def diff(self, desired: DesiredState, actual: ActualState) -> DeviceChanges:
        """This transport's device and per-peer entry changes (the route diff is generic)."""


class LinkSpec(Protocol):
    """What every link a fallback transport creates has."""

    @property
    def name(self) -> str: ...

    @property
    def local(self) -> IPAddress: ...

    @property
    def mtu(self) -> int: ...

    @property
    def addresses(self) -> frozenset[IPInterface]: ...


class LinkAdapter(Protocol[SpecT_contra, ObservedT]):
    """The netlink half of a transport with its own link: reads and builds messages, sends none (the
    `Links` adapter owns the socket), so the transport module stays importable without pyroute2."""

    @property
    def kind(self) -> str:
        """The netlink link kind (IFLA_INFO_KIND)."""

    @property
    def label(self) -> str:
        """The transport's name in messages, e.g. "VXLAN"."""

    def observed(self, name: str, msg: Any, addresses: frozenset[IPInterface]) -> ObservedT:
        """Our observed value from the link's RTM_NEWLINK message (its kind already checked)."""

    def add_attributes(self, spec: SpecT_contra, lower: int) -> dict[str, object]:
        """The `link add` attributes besides name, kind and MTU; `lower` is the underlay link's index."""

    def mismatch(self, existing: ObservedT, spec: SpecT_contra) -> str | None:
        """Why an existing link of ours cannot be adopted for `spec`, or None."""


def gateway(cidr: IPNetwork) -> IPAddress:
    """A node's overlay gateway for one pod CIDR: the CIDR's network address, held by its overlay devices."""
    return interned(cidr.network_address)


def device_addresses(cidrs: Iterable[IPNetwork]) -> frozenset[IPInterface]:
    """Our overlay devices' addresses: each pod CIDR's network address as a host address."""
    return frozenset(ipaddress.ip_interface(f"{gateway(c)}/{c.max_prefixlen}") for c in cidrs)


def first_blocker(checks: Iterable[tuple[bool, str]]) -> str | None:
    """The reason of the first check that blocks, or None."""
    return next((why for blocked, why in checks if blocked), None)
