"""NetworkSet.covers answers exactly what testing every member with subnet_of answers; the peers' networks
followed from snapshot to snapshot equal a rebuild."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.model import InvalidNode, IPNetwork, Node, NodeRecord
from meshd.core.moves import Moves
from meshd.core.netset import NetworkSet, PeerNetworks


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


def test_peer_networks_follow_any_history_of_records_as_a_rebuild_sees_them() -> None:
    """Records come, go and change (new objects, shared CIDRs, our own record, invalid ones): the followed
    networks are exactly the pod CIDRs of the other nodes' records, and cover what a rebuild covers."""
    moves = Moves()
    cidrs = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(6)]
    probes = [*cidrs, ipaddress.ip_network("198.19.0.128/25"), ipaddress.ip_network("198.19.9.0/24")]
    for seed in range(200):
        rng = random.Random(seed)
        followed = PeerNetworks("n0", moves)
        records: dict[str, NodeRecord] = {}
        for _ in range(15):
            name = f"n{rng.randrange(5)}"
            if rng.random() < 0.25:
                records.pop(name, None)
            elif rng.random() < 0.1:
                records[name] = InvalidNode(name, "bad", "bad")
            else:
                own = tuple(rng.sample(cidrs, rng.randrange(3)))
                records[name] = Node(name, ipaddress.ip_address("198.18.0.1"), own)
            followed.follow(tuple(records.values()))
            rebuilt = NetworkSet(
                c for r in records.values() if isinstance(r, Node) and r.name != "n0" for c in r.pod_cidrs
            )
            assert set(followed.networks) == set(rebuilt), f"seed {seed}"
            assert [followed.networks.covers(p) for p in probes] == [rebuilt.covers(p) for p in probes]
