"""NetworkSet.covers answers exactly what testing every member with subnet_of answers."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.model import IPNetwork
from meshd.core.netset import NetworkSet


@st.composite
def networks(draw: st.DrawFn) -> IPNetwork:
    if draw(st.booleans()):
        plen = draw(st.integers(0, 32))
        return ipaddress.ip_network(
            (draw(st.sampled_from([0xC6130000, 0xC6120000, 0x0A000000])), plen), strict=False
        )
    plen = draw(st.integers(0, 128))
    return ipaddress.ip_network((draw(st.sampled_from([0x20010DB8 << 96, 0xFD << 120])), plen), strict=False)


@given(st.lists(networks(), max_size=12), st.lists(networks(), max_size=4), networks())
def test_covers_is_subnet_of_any_member(
    members: list[IPNetwork], gone: list[IPNetwork], dst: IPNetwork
) -> None:
    nets = NetworkSet(members)
    for net in gone:
        nets.discard(net)
    left = [n for n in members if n not in gone]
    assert nets.covers(dst) == any(dst.version == n.version and dst.subnet_of(n) for n in left)  # type: ignore[arg-type]
    assert set(nets) == set(left) and len(nets) == len(set(left))
