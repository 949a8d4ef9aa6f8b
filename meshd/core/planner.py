"""The planner: from a datastore snapshot and the local node to the kernel state we want. Pure.

No I/O, no clock, no DNS. The result does not depend on the order of the snapshot's records.
Transport decisions per pair live in `meshd.core.pairs`, cluster-wide conflicts in `meshd.core.conflicts`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from meshd.core.conflicts import cluster_view
from meshd.core.guard import plan_guards
from meshd.core.model import EncryptionMode, Fallback, IPNetwork, LocalNode, Snapshot, Transport
from meshd.core.pairs import PairPlan, decide_pair
from meshd.core.state import (
    DesiredState,
    DeviceNames,
    FdbEntry,
    IPInterface,
    IpipDeviceSpec,
    NeighborEntry,
    PeerSpec,
    Problem,
    Route,
    VxlanDeviceSpec,
    WireGuardDeviceSpec,
)

DEFAULT_NAMES = DeviceNames()
IPIP_OVERHEAD = 20
IPV6_EXTRA_OVERHEAD = 20  # an IPv6 outer header is 20 bytes longer than an IPv4 one


def plan(
    snapshot: Snapshot,
    local: LocalNode,
    *,
    names: DeviceNames = DEFAULT_NAMES,
    wg_overhead: int = 80,
    vxlan_overhead: int = 50,
) -> DesiredState:
    """The desired kernel state of `local` for this snapshot: devices, peers, FDB/neighbours, routes."""
    config = snapshot.config
    me = local.node
    view = cluster_view(me, snapshot.nodes)
    pairs = tuple(decide_pair(local, peer, config=config, view=view) for peer in view.remotes)
    addresses = device_addresses(me.pod_cidrs)
    wireguard = None
    if local.wireguard_available and me.public_key is not None:
        wireguard = WireGuardDeviceSpec(
            name=names.wireguard,
            public_key=me.public_key,
            listen_port=config.wireguard.listen_port,
            mtu=config.wireguard.mtu or local.underlay_mtu - wg_overhead,
            addresses=addresses,
        )
    vxlan = None
    if config.fallback is Fallback.VXLAN and Transport.VXLAN in me.capabilities:
        v6_extra = IPV6_EXTRA_OVERHEAD if me.underlay_ip.version == 6 else 0
        vxlan = VxlanDeviceSpec(
            name=names.vxlan,
            vni=config.vxlan.vni,
            port=config.vxlan.port,
            local=me.underlay_ip,
            mtu=config.vxlan.mtu or local.underlay_mtu - vxlan_overhead - v6_extra,
            addresses=addresses,
        )
    ipip = None
    if config.fallback is Fallback.IPIP and local.ipip_available:
        ipip = IpipDeviceSpec(
            name=names.ipip,
            local=me.underlay_ip,
            mtu=local.underlay_mtu - IPIP_OVERHEAD,
            addresses=addresses,
        )
    fdb, neighbors = fallback_entries(pairs, mode=config.mode, dev=names.vxlan)
    routes, route_problems = plan_routes(pairs, names)
    return DesiredState(
        wireguard=wireguard,
        peers=plan_peers(pairs, keepalive=config.wireguard.persistent_keepalive),
        vxlan=vxlan,
        fdb=fdb,
        neighbors=neighbors,
        ipip=ipip,
        routes=routes,
        pairs=tuple(p.decision for p in pairs),
        problems=(*view.problems, *_pair_problems(pairs), *route_problems),
        guards=plan_guards(config, me, view),
    )


def gateway(cidr: IPNetwork) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A node's overlay gateway for one pod CIDR: the CIDR's network address, held by its overlay devices."""
    return cidr.network_address


def device_addresses(cidrs: Iterable[IPNetwork]) -> frozenset[IPInterface]:
    """Our overlay devices' addresses: each pod CIDR's network address as a host address."""
    return frozenset(ipaddress.ip_interface(f"{gateway(c)}/{c.max_prefixlen}") for c in cidrs)


def plan_peers(pairs: Sequence[PairPlan], *, keepalive: int) -> tuple[PeerSpec, ...]:
    """A WireGuard peer for every pair that can be encrypted, in use or standby (hitless toggles)."""
    peers = []
    for pair in pairs:
        p = pair.peer
        if pair.wireguard_ok and p.public_key is not None:
            peers.append(
                PeerSpec(
                    public_key=p.public_key,
                    endpoint=p.endpoint,
                    allowed_ips=frozenset(p.pod_cidrs),
                    persistent_keepalive=keepalive,
                    node=p.name,
                )
            )
    return tuple(sorted(peers, key=lambda s: s.public_key))


def fallback_entries(
    pairs: Sequence[PairPlan], *, mode: EncryptionMode, dev: str
) -> tuple[frozenset[FdbEntry], frozenset[NeighborEntry]]:
    """FDB and neighbour entries for VXLAN pairs, and (except in Required mode) standby ones for every
    pair where VXLAN is possible, so that toggling encryption off only moves routes."""
    fdb: set[FdbEntry] = set()
    neighbors: set[NeighborEntry] = set()
    standby = mode is not EncryptionMode.REQUIRED
    for pair in pairs:
        mac = pair.peer.vxlan_mac
        wanted = pair.transport is Transport.VXLAN or (standby and pair.vxlan_ok)
        if not wanted or mac is None:
            continue
        fdb.add(FdbEntry(mac, pair.peer.underlay_ip))
        neighbors.update(NeighborEntry(dev, gateway(c), mac) for c in pair.peer.pod_cidrs)
    return frozenset(fdb), frozenset(neighbors)


def plan_routes(pairs: Sequence[PairPlan], names: DeviceNames) -> tuple[frozenset[Route], list[Problem]]:
    """One route per pod CIDR of each pair with a transport; IPIP carries IPv4 only."""
    routes: set[Route] = set()
    problems = []
    for pair in pairs:
        p = pair.peer
        for cidr in p.pod_cidrs:
            if pair.transport is Transport.WIREGUARD:
                routes.add(Route(cidr, names.wireguard))
            elif pair.transport is Transport.VXLAN:
                routes.add(Route(cidr, names.vxlan, via=gateway(cidr), onlink=True))
            elif pair.transport is Transport.IPIP and cidr.version == 4:
                routes.add(Route(cidr, names.ipip, via=p.underlay_ip, onlink=True))
            elif pair.transport is Transport.IPIP:
                detail = f"IPIP carries only IPv4: no route to {cidr} of {p.name}"
                problems.append(Problem("ipip-ipv6-cidr", (p.name,), detail))
    return frozenset(routes), problems


def _pair_problems(pairs: Sequence[PairPlan]) -> list[Problem]:
    """Pairs without any pod route (conflicts are reported once, by the conflict finder)."""
    return [Problem(p.problem, (p.peer.name,), f"{p.peer.name}: {p.reason}") for p in pairs if p.problem]
