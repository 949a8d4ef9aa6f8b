"""What the agent would observe of a kernel that holds exactly a desired state (no fake kernel run)."""

from __future__ import annotations

from meshd.core.state import (
    ActualState,
    DesiredState,
    ObservedIpip,
    ObservedPeer,
    ObservedVxlan,
    ObservedWireGuard,
)


def actual_of(desired: DesiredState, *, mac: str = "02:00:00:00:00:ff") -> ActualState:
    """The kernel state that `desired` describes, as the agent would observe it."""
    wg, vx, ipip = desired.wireguard, desired.vxlan, desired.ipip
    peers = tuple(
        ObservedPeer(p.public_key, p.endpoint, p.allowed_ips, p.persistent_keepalive) for p in desired.peers
    )
    return ActualState(
        wireguard=ObservedWireGuard(wg.name, wg.public_key, wg.listen_port, wg.mtu, wg.addresses, peers)
        if wg
        else None,
        vxlan=ObservedVxlan(vx.name, vx.vni, vx.port, vx.local, vx.mtu, mac, vx.addresses) if vx else None,
        fdb=desired.fdb,
        neighbors=desired.neighbors,
        ipip=ObservedIpip(ipip.name, ipip.local, ipip.mtu, ipip.addresses) if ipip else None,
        routes=desired.routes,
        guards=desired.guards,
    )
