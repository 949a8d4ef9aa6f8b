"""The IPIP link (IPv4-in-IPv4, no remote: routes pick the peer with `via PEER_UNDERLAY onlink`).

Kernels without the ipip module refuse `link add kind=ipip` with EOPNOTSUPP: that is UnsupportedError,
and `ipip_supported()` tells the agent beforehand, so it does not advertise the capability.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from meshd.core.state import IPInterface, IpipDeviceSpec, ObservedIpip
from meshd.errors import PermanentError, UnsupportedError
from vxlan.nlsock import NetlinkSocket, describe_errno, translate

log = logging.getLogger(__name__)

PROBE_NAME = "meshd-ipprobe"
_NOT_SUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EAFNOSUPPORT})


def observed(name: str, msg: Any, *, addresses: frozenset[IPInterface], where: str = "") -> ObservedIpip:
    """An existing link named `name` as ObservedIpip; one of another kind is not ours to touch."""
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind != "ipip":
        raise PermanentError(f"link {name} exists and is not ours (kind {kind}){where}")
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    local = data.get("IFLA_IPIP_LOCAL") if data is not None else None
    return ObservedIpip(
        name=name,
        local=ipaddress.ip_address(local) if local and local != "0.0.0.0" else None,
        mtu=int(msg.get("IFLA_MTU")),
        addresses=addresses,
    )


async def create(sock: NetlinkSocket, spec: IpipDeviceSpec, *, lower: int, doing: str) -> None:
    if spec.local.version != 4:
        raise PermanentError(f"{doing}: IPIP needs an IPv4 underlay address")
    try:
        await sock.ipr().link(
            "add", ifname=spec.name, kind="ipip", ipip_local=str(spec.local), ipip_link=lower, mtu=spec.mtu
        )
    except NetlinkError as exc:
        if exc.code in _NOT_SUPPORTED:
            raise UnsupportedError(
                f"kernel lacks ipip: {doing} failed with {describe_errno(exc.code)}"
            ) from exc
        raise translate(exc, doing) from exc


async def ipip_supported(*, netns: str | None = None) -> bool:
    """Whether this kernel can create IPIP links.

    Probes by creating (and at once deleting) a link named `meshd-ipprobe` in `netns` (None: this
    process's namespace), which also loads the module where it is available.
    """
    sock = NetlinkSocket(netns=netns)
    try:
        await sock.ipr().link("add", ifname=PROBE_NAME, kind="ipip")
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return True
        log.debug("ipip probe failed: %s", describe_errno(exc.code))
        return False
    else:
        with contextlib.suppress(NetlinkError):
            await sock.ipr().link("del", ifname=PROBE_NAME)
        return True
    finally:
        sock.close()
