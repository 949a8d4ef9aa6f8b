"""Facts about the underlay network read from the kernel: which link holds our address, and its MTU."""

from __future__ import annotations

import ipaddress

from pyroute2.iproute.linux import AsyncIPRoute

from meshd.core.model import IPAddress
from meshd.errors import ConfigError

DEFAULT_MTU = 1500


async def underlay_mtu(address: IPAddress) -> int:
    """MTU of the link that holds `address`. A missing address is a configuration error: peers could not
    reach us there."""
    async with AsyncIPRoute() as ipr:
        index = None
        async for msg in await ipr.addr("dump"):
            value = msg.get("IFA_ADDRESS")
            if value is not None and ipaddress.ip_address(value) == address:
                index = msg["index"]
                break
        if index is None:
            raise ConfigError(f"underlay address {address} is not assigned to any link in this namespace")
        links = await ipr.link("get", index=index)
        mtu = links[0].get("IFLA_MTU") if links else None
    return int(mtu) if mtu else DEFAULT_MTU
