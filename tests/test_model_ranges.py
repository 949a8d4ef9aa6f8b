"""The address checks every decoded node goes through, held equal to ipaddress's own overlap and membership
tests over random networks and addresses (they compare integer ranges, for speed at thousands of nodes)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.model import (
    MIN_POD_PREFIX,
    NOT_UNICAST,
    IPAddress,
    IPNetwork,
    address_problem,
    pod_cidr_problem,
)

_V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_NEAR = st.sampled_from([n for n, _ in NOT_UNICAST]).flatmap(  # in, at the edges of and next to each range
    lambda n: st.integers(-2, n.num_addresses + 1).map(
        lambda i: type(n.network_address)((int(n.network_address) + i) % 2**n.max_prefixlen)
    )
)
_MAPPED = _V4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))
addresses = st.one_of(_V4, _V6, _NEAR, _MAPPED)


@st.composite
def networks(draw: st.DrawFn) -> IPNetwork:
    addr = draw(addresses)
    plen = draw(st.integers(0, addr.max_prefixlen))
    return ipaddress.ip_network(f"{addr}/{plen}", strict=False)


def _pod_cidr_reference(net: IPNetwork) -> str | None:
    if net.prefixlen < MIN_POD_PREFIX[net.version]:
        return f"is broader than /{MIN_POD_PREFIX[net.version]}, too large for one node's pods"
    for special, what in NOT_UNICAST:
        if special.version == net.version and special.overlaps(net):
            return f"overlaps the {what} range {special}"
    return None


def _address_reference(addr: IPAddress) -> str | None:
    plain = addr.ipv4_mapped if addr.version == 6 and addr.ipv4_mapped else addr
    for special, what in NOT_UNICAST:
        if plain in special:
            return f"is a{'n' if what[0] in 'aeiou' else ''} {what} address"
    return None


@given(networks())
def test_pod_cidr_problem_is_ipaddress_overlap(net: IPNetwork) -> None:
    assert pod_cidr_problem(net) == _pod_cidr_reference(net)


@given(addresses)
def test_address_problem_is_ipaddress_membership(addr: IPAddress) -> None:
    assert address_problem(addr) == _address_reference(addr)


def test_the_edges_of_each_range() -> None:
    assert address_problem(ipaddress.ip_address("127.255.255.255")) == "is a loopback address"
    assert address_problem(ipaddress.ip_address("128.0.0.0")) is None
    assert address_problem(ipaddress.ip_address("::ffff:169.254.0.1")) == "is a link-local address"
    assert pod_cidr_problem(ipaddress.ip_network("223.255.255.0/24")) is None
    assert pod_cidr_problem(ipaddress.ip_network("223.0.0.0/8")) is None
    assert (
        pod_cidr_problem(ipaddress.ip_network("224.0.0.0/29")) == "overlaps the multicast range 224.0.0.0/4"
    )
