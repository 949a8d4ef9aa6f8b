"""The narrow boundaries between the agent and the world. One real adapter and one behavioural fake each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from meshd.core.actions import Action, PeerAction
from meshd.core.model import IPNetwork, Snapshot
from meshd.core.state import (
    ActualState,
    DeviceNames,
    FdbEntry,
    IPInterface,
    NeighborEntry,
    Route,
    WireGuardDeviceSpec,
    WireGuardReading,
)
from meshd.core.transport import LinkAdapter, LinkSpec

SpecT = TypeVar("SpecT", bound=LinkSpec)
ObservedT = TypeVar("ObservedT")


class WireGuardDevice(Protocol):
    """The WireGuard half of the WireGuard link: key, listen port and peers (kernel genl or wireguard-go).

    Link-level properties (MTU, addresses, deletion) go through `Links` like any other link.
    """

    name: str

    async def observe_device(self) -> WireGuardReading | None:
        """Key, port and peers in one read (one UAPI get or genl dump); None when there is no device."""

    async def create(self, spec: WireGuardDeviceSpec) -> None:
        """Create the link (kernel) or start/adopt wireguard-go (userspace) and configure it."""

    async def configure(self, spec: WireGuardDeviceSpec) -> None:
        """Set our private key and the listen port. Existing peers are kept."""

    async def apply_peers(self, changes: Sequence[PeerAction]) -> None:
        """Several per-peer changes, in order, in as few writes as the backend allows."""

    async def delete(self) -> None:
        """Remove the link; wireguard-go exits with it."""


class Links(Protocol):
    """Links, addresses, neighbours and FDB entries through netlink, in one network namespace."""

    async def link_mtu(self, name: str) -> int | None: ...

    async def link_addresses(self, name: str) -> frozenset[IPInterface]: ...

    async def observe_link(self, name: str, adapter: LinkAdapter[Any, ObservedT]) -> ObservedT | None:
        """A transport's own link as it observes it; PermanentError when `name` is a link of another kind."""

    async def create_link(self, spec: SpecT, adapter: LinkAdapter[SpecT, ObservedT]) -> ObservedT:
        """Create or adopt the link, with its addresses, MTU and up; returns it as observed. Raises
        UnsupportedError when the kernel lacks the link kind (e.g. no ipip module)."""

    async def set_mtu(self, name: str, mtu: int) -> None: ...

    async def link_up(self, name: str) -> bool:
        """Whether the link is set up (False also when it does not exist)."""

    async def set_up(self, name: str) -> None: ...

    async def add_address(self, name: str, address: IPInterface) -> None: ...

    async def remove_address(self, name: str, address: IPInterface) -> None: ...

    async def delete_link(self, name: str) -> None: ...

    async def observe_neighbors(self, dev: str) -> frozenset[NeighborEntry]:
        """Permanent neighbour entries on `dev` (ours are permanent; learned ones are ignored)."""

    async def observe_fdb(self, dev: str) -> frozenset[FdbEntry]:
        """Static FDB entries with a remote destination on `dev`."""

    async def add_neighbors(self, entries: Sequence[NeighborEntry]) -> None:
        """Add or fix each entry, in one batch; a BatchError names the ones that failed."""

    async def remove_neighbors(self, entries: Sequence[NeighborEntry]) -> None:
        """Remove each entry that still has its MAC, in one batch."""

    async def add_fdbs(self, dev: str, entries: Sequence[FdbEntry]) -> None:
        """Add or fix each entry on `dev`, in one batch; a BatchError names the ones that failed."""

    async def remove_fdbs(self, dev: str, entries: Sequence[FdbEntry]) -> None:
        """Remove each exact (MAC, dst) entry from `dev`, in one batch."""


class RouteTable(Protocol):
    """Routes marked with our protocol number in one table. Only those are ever changed or removed."""

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        """Peers' pod CIDRs: foreign routes inside them are reported by `observe` (never touched)."""

    async def observe(self) -> tuple[frozenset[Route], frozenset[Route]]:
        """(ours, foreign routes whose destination overlaps one of ours or a peer's pod CIDR)."""

    async def replace_all(self, routes: Sequence[Route]) -> None:
        """Add or move each route, in one batch; a BatchError names the ones that failed."""

    async def remove_all(self, routes: Sequence[Route]) -> None:
        """Remove each of our routes, in one batch."""


class Datastore(Protocol):
    """Where nodes and the MeshConfig live (Kubernetes API, or a directory). Watches only mark "changed";
    the reconciler reads a whole immutable `snapshot()` each pass."""

    async def start(self) -> None:
        """Begin listing and watching in background tasks. Returns at once."""

    def snapshot(self) -> Snapshot:
        """All node records (decoded, invalid ones included) and the MeshConfig in force."""

    @property
    def failure(self) -> str | None:
        """Why the datastore stopped following changes for good (e.g. RBAC forbids a watch), or None."""

    async def wait_changed(self) -> None:
        """Return when something changed since the last call (many changes collapse into one wake-up)."""

    async def publish(self, node_name: str, annotations: Mapping[str, str | None]) -> None:
        """Patch our own node's `meshd.io/*` annotations in one write (None removes one); no write if equal."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying actions taught the dataplane."""

    vxlan_mac: str | None = None  # the MAC of a VXLAN device it created (None: it created none)


class Dataplane(Protocol):
    """The node's kernel dataplane as the reconcile loop uses it: observe everything we own, apply a diff."""

    @property
    def names(self) -> DeviceNames: ...

    @property
    def wireguard(self) -> WireGuardDevice | None:
        """The WireGuard backend, None on a node without one."""

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        """Peers' pod CIDRs: foreign routes inside them are reported by `observe` (never touched)."""

    async def observe(self) -> ActualState: ...

    async def apply(self, actions: Sequence[Action]) -> Applied:
        """Apply in order; returns the facts learned on the way."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One Kubernetes-style Event: `kind`/`name` the object it is about (`Node` or `MeshConfig`)."""

    kind: str
    name: str
    reason: str
    message: str
    type: str = "Normal"  # or "Warning"
    source: str = ""  # the node whose agent reports it


class StatusStore(Protocol):
    """Where agents report what they did: MeshNodes, the MeshConfig status (one writer, by lease) and Events.
    Kubernetes: the API (meshd/datastore/k8s_status.py); file datastore: DIR (meshd/datastore/file_status.py)."""

    async def write_meshnode(self, name: str, status: Mapping[str, Any]) -> None:
        """Create our MeshNode (owned by our Node) or replace its status."""

    async def read_meshnode(self, name: str) -> dict[str, Any] | None:
        """Our MeshNode's status as stored (None: none yet), so a restarted agent rewrites nothing unchanged."""

    async def list_meshnodes(self) -> list[dict[str, Any]]: ...

    async def hold_lease(self, holder: str, *, duration: float) -> bool:
        """Take or renew the MeshConfig-status lease; True while `holder` holds it."""

    async def write_meshconfig_status(self, status: Mapping[str, Any]) -> None: ...

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        """Create the Event or update its count and last time (the same cause is one object)."""

    async def close(self) -> None: ...
