"""Set-device messages as meshd encodes them (overlay/wg_msgs.py), decoded with pyroute2's own `wgmsg`:
the bytes say what was meant, messages stay within their bound, and a peer whose allowed IPs do not fit
continues in the next message."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.generic.wireguard import wgmsg

from meshd.core.model import Endpoint, IPNetwork
from overlay.wg_msgs import (
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    GenlPeer,
    SetPeers,
    pack,
)

NAME = "meshd0"
FAMILY = 0x1F


def _decode(data: bytes) -> Any:
    msg = wgmsg(data)
    msg.decode()
    return msg


def _net(i: int, v6: bool) -> IPNetwork:
    if v6:
        return ipaddress.IPv6Network(((0x20010DB8 << 96) + ((i & 0xFFFFFFFF) << 64), 64))
    return ipaddress.IPv4Network((0xC6130000 + (i & 0xFFFF), 32))


def test_a_message_decodes_with_pyroute2_to_what_was_meant() -> None:
    a = GenlPeer(
        bytes([1]) * 32,
        WGPEER_F_REPLACE_ALLOWEDIPS,
        Endpoint(ipaddress.ip_address("198.18.0.1"), 51820),
        25,
        (_net(1, False), _net(2, True)),
    )
    b = GenlPeer(bytes([2]) * 32, WGPEER_F_UPDATE_ONLY, Endpoint(ipaddress.ip_address("2001:db8::2"), 1))
    c = GenlPeer(bytes([3]) * 32, WGPEER_F_UPDATE_ONLY, preshared_key=bytes(range(32)))
    d = GenlPeer(bytes([4]) * 32, WGPEER_F_REMOVE_ME)
    msg = _decode(SetPeers(FAMILY, NAME, (a, b, c, d)).encode(seq=7))
    assert (msg["header"]["type"], msg["header"]["sequence_number"], msg["cmd"], msg["version"]) == (
        FAMILY,
        7,
        1,
        1,
    )
    assert msg["header"]["flags"] == 0x5  # NLM_F_REQUEST | NLM_F_ACK
    assert msg.get_attr("WGDEVICE_A_IFNAME") == NAME
    pa, pb, pc, pd = msg.get_attr("WGDEVICE_A_PEERS")
    assert pa.get_attr("WGPEER_A_PUBLIC_KEY") == base64.b64encode(a.public_key)
    assert (pa.get_attr("WGPEER_A_FLAGS"), pa.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")) == (2, 25)
    ep = pa.get_attr("WGPEER_A_ENDPOINT")
    assert (ep["family"], ep["addr"], ep["port"]) == (2, "198.18.0.1", 51820)
    assert [x["addr"] for x in pa.get_attr("WGPEER_A_ALLOWEDIPS")] == ["198.19.0.1/32", "2001:db8:0:2::/64"]
    ep = pb.get_attr("WGPEER_A_ENDPOINT")
    assert (ep["family"], ep["addr"], ep["port"]) == (10, "2001:db8::2", 1)
    assert (
        pb.get_attr("WGPEER_A_ALLOWEDIPS") is None
        and pb.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") is None
    )
    assert pc.get_attr("WGPEER_A_PRESHARED_KEY") == base64.b64encode(bytes(range(32)))
    assert [name for name, _ in pd["attrs"]] == ["WGPEER_A_PUBLIC_KEY", "WGPEER_A_FLAGS"]
    assert pd.get_attr("WGPEER_A_FLAGS") == WGPEER_F_REMOVE_ME


peers_st = st.lists(
    st.builds(
        lambda i, flags, n, v6, ep, keepalive: GenlPeer(
            i.to_bytes(32, "little"),
            flags,
            Endpoint(ipaddress.ip_address("2001:db8::1" if v6 else "198.18.0.1"), 51820) if ep else None,
            keepalive,
            tuple(_net(i * 4096 + j, (j + v6) % 2 == 0) for j in range(n)) if n >= 0 else None,
        ),
        st.integers(0, 1 << 20),
        st.sampled_from([WGPEER_F_REPLACE_ALLOWEDIPS, WGPEER_F_UPDATE_ONLY, WGPEER_F_REMOVE_ME]),
        st.integers(-1, 400),
        st.booleans(),
        st.booleans(),
        st.none() | st.integers(0, 65535),
    ),
    max_size=12,
    unique_by=lambda p: p.public_key,
)


@settings(max_examples=40)
@given(peers_st, st.integers(512, 60 * 1024))
def test_packed_messages_stay_within_their_bound_and_carry_every_peer_in_order(
    peers: list[GenlPeer], limit: int
) -> None:
    messages = pack(peers, NAME, limit)
    order = [i for m in messages for i, _ in m]
    assert order == sorted(order) and set(order) == set(range(len(peers)))
    seen: dict[bytes, list[str]] = {}
    for m in messages:
        data = SetPeers(FAMILY, NAME, tuple(part for _, part in m)).encode(1)
        assert len(data) <= limit
        for index, p in zip([i for i, _ in m], _decode(data).get_attr("WGDEVICE_A_PEERS"), strict=True):
            key = base64.b64decode(p.get_attr("WGPEER_A_PUBLIC_KEY"))
            assert key == peers[index].public_key
            first = key not in seen
            want = peers[index].flags if first else WGPEER_F_UPDATE_ONLY  # a continuation never creates it
            assert p.get_attr("WGPEER_A_FLAGS") == want
            seen.setdefault(key, []).extend(x["addr"] for x in p.get_attr("WGPEER_A_ALLOWEDIPS") or ())
    for p in peers:
        assert seen[p.public_key] == [str(n) for n in p.allowed_ips or ()]


def test_a_peer_with_more_allowed_ips_than_a_message_holds_continues_in_the_next() -> None:
    big = GenlPeer(
        bytes([9]) * 32, WGPEER_F_REPLACE_ALLOWEDIPS, allowed_ips=tuple(_net(i, False) for i in range(2000))
    )
    small = GenlPeer(bytes([8]) * 32, WGPEER_F_REPLACE_ALLOWEDIPS, allowed_ips=(_net(9999, True),))
    messages = pack([small, big, small], NAME)  # 2000 * 28 bytes: four messages of 16 KiB
    assert len(messages) == 4
    parts = [[(i, p.flags, len(p.allowed_ips or ())) for i, p in m] for m in messages]
    assert parts[0][0] == (0, WGPEER_F_REPLACE_ALLOWEDIPS, 1)
    assert parts[0][1][:2] == (1, WGPEER_F_REPLACE_ALLOWEDIPS)
    assert [p[0][:2] for p in parts[1:]] == [(1, WGPEER_F_UPDATE_ONLY)] * 3
    assert parts[-1][-1] == (2, WGPEER_F_REPLACE_ALLOWEDIPS, 1)  # the next peer shares the last message
    assert sum(n for m in parts for i, _, n in m if i == 1) == 2000
