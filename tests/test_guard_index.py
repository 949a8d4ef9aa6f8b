"""The guard planner's address index answers "does one of these nodes' underlay or endpoint addresses lie
in this network?" exactly as asking each address would (random nodes of both families, random networks
around them), by binary search instead of a scan per pod CIDR."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.guard import AddressIndex
from meshd.core.model import Endpoint, IPNetwork, Node

_V4 = st.integers(0, 255).map(lambda i: ipaddress.IPv4Address(f"198.18.{i // 16}.{i % 16}"))
_V6 = st.integers(0, 255).map(lambda i: ipaddress.IPv6Address(f"2001:db8::{i:x}"))
_ADDR = st.one_of(_V4, _V6)


@st.composite
def _nodes(draw: st.DrawFn) -> list[Node]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        endpoint = draw(st.one_of(st.none(), _ADDR))
        out.append(
            Node(
                f"n{i}",
                draw(_ADDR),
                (),
                endpoint=Endpoint(endpoint, 51820) if endpoint is not None else None,
            )
        )
    return out


@st.composite
def _networks(draw: st.DrawFn) -> IPNetwork:
    addr = draw(_ADDR)
    plen = draw(st.integers(addr.max_prefixlen - 8, addr.max_prefixlen))
    return ipaddress.ip_network(f"{addr}/{plen}", strict=False)


@given(_nodes(), _networks())
def test_any_in_is_a_scan_of_every_address(nodes: list[Node], net: IPNetwork) -> None:
    addresses = {n.underlay_ip for n in nodes} | {n.endpoint.host for n in nodes if n.endpoint is not None}
    assert AddressIndex(nodes).any_in(net) == any(a in net for a in addresses)
