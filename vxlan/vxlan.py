"""The VXLAN transport (unencrypted fallback): what a pair needs, the device, FDB and neighbour entries per
peer (standby ones too, except in Required mode, so toggling encryption off only moves routes), routes via
the peer's overlay gateway, their diff, and the netlink link adapter.

Pure at import (no pyroute2): the adapter reads and builds netlink messages; `vxlan.links.NetlinkLinks`
sends them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from meshd.core import actions as a
from meshd.core.conflicts import ClusterView
from meshd.core.devices import IFF_UP, DeviceChanges, Link, diff_link, ip_key
from meshd.core.model import EncryptionMode, IPAddress, IPNetwork, LocalNode, Node, Transport
from meshd.core.state import (
    ActualState,
    DesiredState,
    DeviceNames,
    FdbEntry,
    IPInterface,
    NeighborEntry,
    ObservedVxlan,
    Problem,
    Route,
    VxlanDeviceSpec,
)
from meshd.core.transport import (
    NO_ENTRIES,
    Named,
    PairEntries,
    PairPlan,
    PlanContext,
    first_blocker,
    gateway,
)

OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet
IPV6_EXTRA_OVERHEAD = 20  # an IPv6 outer header is 20 bytes longer than an IPv4 one


class Vxlan(Named):
    """The `Encapsulation` of VXLAN pairs, and the `LinkAdapter` of its link."""

    def blocker(self, local: LocalNode, peer: Node, view: ClusterView) -> str | None:
        me = local.node
        return first_blocker(
            (
                (Transport.VXLAN not in me.capabilities, "this node cannot run VXLAN"),
                (Transport.VXLAN not in peer.capabilities, f"{peer.name} cannot run VXLAN"),
                (peer.vxlan_mac is None, f"{peer.name} publishes no VXLAN MAC"),
                (_dup_mac(me, view), "this node's VXLAN MAC is also published by another node"),
                (_dup_mac(peer, view), f"{peer.name}'s VXLAN MAC is also published by another node"),
            )
        )

    def device(self, state: DesiredState, ctx: PlanContext) -> DesiredState:
        local, config = ctx.local, ctx.config
        device = None
        if ctx.is_fallback(self.transport) and Transport.VXLAN in local.node.capabilities:
            v6_extra = IPV6_EXTRA_OVERHEAD if local.node.underlay_ip.version == 6 else 0
            device = VxlanDeviceSpec(
                name=ctx.names.vxlan,
                vni=config.vxlan.vni,
                port=config.vxlan.port,
                local=local.node.underlay_ip,
                mtu=config.vxlan.mtu or local.underlay_mtu - OVERHEAD - v6_extra,
                addresses=ctx.addresses,
            )
        return replace(state, vxlan=device)

    def entries(self, pair: PairPlan, ctx: PlanContext) -> PairEntries:
        """FDB and neighbour entries for a VXLAN pair, and (except in Required mode) standby ones for a pair
        where VXLAN is possible, so that toggling encryption off only moves routes."""
        mac = pair.peer.vxlan_mac
        standby = ctx.config.mode is not EncryptionMode.REQUIRED
        wanted = pair.transport is Transport.VXLAN or (standby and Transport.VXLAN in pair.usable)
        if not wanted or mac is None:
            return NO_ENTRIES
        dev = ctx.names.vxlan
        return PairEntries(
            fdb=(FdbEntry(mac, pair.peer.underlay_ip),),
            neighbors=tuple(NeighborEntry(dev, gateway(c), mac) for c in pair.peer.pod_cidrs),
        )

    def route(self, peer: Node, cidr: IPNetwork, names: DeviceNames) -> Route | Problem:
        return Route(cidr, names.vxlan, via=gateway(cidr), onlink=True)

    def diff(self, desired: DesiredState, actual: ActualState) -> DeviceChanges:
        want = desired.vxlan
        create = (a.CreateVxlanDevice(want),) if want else ()
        changes = diff_link(_link(want), _link(actual.vxlan), create=create)
        fdb_adds, fdb_removes = _diff_fdb(desired, actual, gone=changes.gone)
        neigh_adds, neigh_removes = _diff_neighbors(desired, actual, gone=changes.gone)
        return replace(
            changes, entry_adds=(*neigh_adds, *fdb_adds), entry_removes=(*fdb_removes, *neigh_removes)
        )

    # --- the link adapter -------------------------------------------------------------------------

    def observed(self, name: str, msg: Any, addresses: frozenset[IPInterface]) -> ObservedVxlan:
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
        return ObservedVxlan(
            name=name,
            vni=int(data.get("IFLA_VXLAN_ID")),
            port=int(data.get("IFLA_VXLAN_PORT")),
            local=ipaddress.ip_address(local) if local else None,
            mtu=int(msg.get("IFLA_MTU")),
            mac=str(msg.get("IFLA_ADDRESS")).lower(),
            addresses=addresses,
            up=bool(msg["flags"] & IFF_UP),
        )

    def add_attributes(self, spec: VxlanDeviceSpec, lower: int) -> dict[str, object]:
        local = "vxlan_local" if spec.local.version == 4 else "vxlan_local6"
        return {
            "vxlan_id": spec.vni,
            "vxlan_port": spec.port,
            "vxlan_link": lower,
            "vxlan_learning": 0,
            local: str(spec.local),
        }

    def mismatch(self, existing: ObservedVxlan, spec: VxlanDeviceSpec) -> str | None:
        if (existing.vni, existing.port, existing.local) == (spec.vni, spec.port, spec.local):
            return None
        return f"a different VXLAN link {spec.name} exists: {existing}"


def _link(device: VxlanDeviceSpec | ObservedVxlan | None) -> Link | None:
    if device is None:
        return None
    identity = (device.name, device.vni, device.port, device.local)
    up = device.up if isinstance(device, ObservedVxlan) else True
    return Link(device.name, identity, device.mtu, device.addresses, label="name/vni/port/local", up=up)


def _dup_mac(node: Node, view: ClusterView) -> bool:
    return node.vxlan_mac is not None and node.vxlan_mac.lower() in view.duplicate_macs


def _fdb_key(entry: FdbEntry) -> tuple[str, tuple[int, int]]:
    return (entry.mac, ip_key(entry.dst))


def _neighbor_key(entry: NeighborEntry) -> tuple[str, tuple[int, int]]:
    return (entry.dev, ip_key(entry.ip))


def _diff_fdb(
    desired: DesiredState, actual: ActualState, *, gone: frozenset[str]
) -> tuple[tuple[a.Action, ...], tuple[a.Action, ...]]:
    """FDB entries are keyed by MAC like the kernel's unicast entries (one destination each, installed
    with replace): a changed destination is one AddFdb, and only MACs no longer wanted are removed."""
    have = frozenset() if actual.vxlan is None or actual.vxlan.name in gone else actual.fdb
    want = {e.mac: e for e in sorted(desired.fdb, key=_fdb_key)}
    adds: tuple[a.Action, ...] = ()
    if desired.vxlan is not None:
        dev = desired.vxlan.name
        adds = tuple(a.AddFdb(dev, e) for e in sorted(desired.fdb - have, key=_fdb_key))
    removes: tuple[a.Action, ...] = ()
    if actual.vxlan is not None:
        dev = actual.vxlan.name
        stale = (e for e in have - desired.fdb if e.mac not in want or want[e.mac] in have)
        removes = tuple(a.RemoveFdb(dev, e) for e in sorted(stale, key=_fdb_key))
    return adds, removes


def _diff_neighbors(
    desired: DesiredState, actual: ActualState, *, gone: frozenset[str]
) -> tuple[tuple[a.Action, ...], tuple[a.Action, ...]]:
    """Neighbour entries are keyed by (device, address) like the kernel's: a changed MAC is replaced."""
    want: dict[tuple[str, IPAddress], NeighborEntry] = {(n.dev, n.ip): n for n in desired.neighbors}
    have = {(n.dev, n.ip): n for n in actual.neighbors if n.dev not in gone}
    added = sorted((n for k, n in want.items() if have.get(k) != n), key=_neighbor_key)
    removed = sorted((n for k, n in have.items() if k not in want), key=_neighbor_key)
    return tuple(a.AddNeighbor(n) for n in added), tuple(a.RemoveNeighbor(n) for n in removed)


VXLAN = Vxlan(Transport.VXLAN, kind="vxlan", label="VXLAN")
