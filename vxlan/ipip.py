"""The IPIP transport (IPv4-in-IPv4, unencrypted fallback): what a pair needs, the device (no remote:
routes pick the peer with `via PEER_UNDERLAY onlink`), IPv4-only routes, the device diff, and the netlink
link adapter. IPIP has no per-peer entries.

Pure at import (no pyroute2). Kernels without the ipip module refuse `link add kind=ipip` with
EOPNOTSUPP: `vxlan.links.NetlinkLinks` turns that into UnsupportedError, and `vxlan.links.ipip_supported`
tells the agent beforehand, so it does not advertise the capability.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from meshd.core import actions as a
from meshd.core.conflicts import ClusterView
from meshd.core.devices import IFF_UP, DeviceChanges, Link, diff_link
from meshd.core.model import IPNetwork, LocalNode, Node, Transport
from meshd.core.state import (
    ActualState,
    DesiredState,
    DeviceNames,
    IPInterface,
    IpipDeviceSpec,
    ObservedIpip,
    Problem,
    Route,
)
from meshd.core.transport import NO_ENTRIES, Named, PairEntries, PairPlan, PlanContext, first_blocker
from meshd.errors import PermanentError

OVERHEAD = 20  # the outer IPv4 header


class Ipip(Named):
    """The `Encapsulation` of IPIP pairs, and the `LinkAdapter` of its link."""

    def blocker(self, local: LocalNode, peer: Node, view: ClusterView) -> str | None:
        me = local.node
        return first_blocker(
            (
                (not local.ipip_available, "this node has no IPIP support"),
                (Transport.IPIP not in me.capabilities, "this node does not advertise IPIP"),
                (Transport.IPIP not in peer.capabilities, f"{peer.name} cannot run IPIP"),
                (me.underlay_ip.version != 4, "IPIP needs an IPv4 underlay and this node's is IPv6"),
                (peer.underlay_ip.version != 4, f"IPIP needs an IPv4 underlay and {peer.name}'s is IPv6"),
            )
        )

    def device(self, state: DesiredState, ctx: PlanContext) -> DesiredState:
        local = ctx.local
        device = None
        if ctx.is_fallback(self.transport) and local.ipip_available:
            device = IpipDeviceSpec(
                name=ctx.names.ipip,
                local=local.node.underlay_ip,
                mtu=local.underlay_mtu - OVERHEAD,
                addresses=ctx.addresses,
            )
        return replace(state, ipip=device)

    def entries(self, pair: PairPlan, ctx: PlanContext) -> PairEntries:
        return NO_ENTRIES  # routes pick the peer: no per-peer entries

    def route(self, peer: Node, cidr: IPNetwork, names: DeviceNames) -> Route | Problem:
        if cidr.version == 4:
            return Route(cidr, names.ipip, via=peer.underlay_ip, onlink=True)
        detail = f"IPIP carries only IPv4: no route to {cidr} of {peer.name}"
        return Problem("ipip-ipv6-cidr", (peer.name,), detail)

    def diff(self, desired: DesiredState, actual: ActualState) -> DeviceChanges:
        want = desired.ipip
        create = (a.CreateIpipDevice(want),) if want else ()
        return diff_link(_link(want), _link(actual.ipip), create=create)

    # --- the link adapter -------------------------------------------------------------------------

    def observed(self, name: str, msg: Any, addresses: frozenset[IPInterface]) -> ObservedIpip:
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        local = data.get("IFLA_IPIP_LOCAL") if data is not None else None
        return ObservedIpip(
            name=name,
            local=ipaddress.ip_address(local) if local and local != "0.0.0.0" else None,
            mtu=int(msg.get("IFLA_MTU")),
            addresses=addresses,
            up=bool(msg["flags"] & IFF_UP),
        )

    def add_attributes(self, spec: IpipDeviceSpec, lower: int) -> dict[str, object]:
        if spec.local.version != 4:
            raise PermanentError(f"creating IPIP link {spec.name}: IPIP needs an IPv4 underlay address")
        return {"ipip_local": str(spec.local), "ipip_link": lower}

    def mismatch(self, existing: ObservedIpip, spec: IpipDeviceSpec) -> str | None:
        return None  # adopted as it is: a changed local address is a recreate, decided by the diff


def _link(device: IpipDeviceSpec | ObservedIpip | None) -> Link | None:
    if device is None:
        return None
    up = device.up if isinstance(device, ObservedIpip) else True
    return Link(
        device.name, (device.name, device.local), device.mtu, device.addresses, label="name/local", up=up
    )


IPIP = Ipip(Transport.IPIP, kind="ipip", label="IPIP")
