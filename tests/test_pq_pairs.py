"""Which WireGuard pairs take part in PSK exchanges (meshd.pq.pairs, pure): both ends decide alike."""

from __future__ import annotations

import ipaddress

from keys.values import PrivateKey
from meshd.core.model import LocalNode, MeshConfig, Node, Snapshot, Transport, WireGuardSettings
from meshd.core.state import DesiredState, PairDecision
from meshd.pq.pairs import DISABLED, NO_COMMON_FAMILY, OPTED_OUT, PEER_NOT_TAKING_PART, PqPlan, plan_pairs


def node(name: str, cidr: str, *, pq: bool = True) -> Node:
    return Node(
        name,
        ipaddress.ip_address(f"198.18.0.{int(name[-1]) + 1}"),
        (ipaddress.ip_network(cidr),),
        public_key=PrivateKey.generate().public_key(),
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
        post_quantum=pq,
    )


def decide(
    me: Node, nodes: list[Node], *, enabled: bool = True, via: Transport = Transport.WIREGUARD
) -> PqPlan:
    config = MeshConfig(wireguard=WireGuardSettings(post_quantum=enabled, psk_rotation_interval=20.0))
    pairs = tuple(PairDecision(n.name, via, "") for n in nodes if n is not me)
    return plan_pairs(Snapshot.of(nodes, config), LocalNode(me), DesiredState(pairs=pairs))


def test_both_ends_agree_on_roles_addresses_and_keys() -> None:
    a, b = node("n0", "198.19.1.0/24"), node("n1", "198.19.2.0/24")
    (pa,), (pb,) = decide(a, [a, b]).pairs, decide(b, [a, b]).pairs
    assert pa.keys == pb.keys and pa.initiator and not pb.initiator
    assert (
        (pa.local_addr, pa.peer_addr)
        == (pb.peer_addr, pb.local_addr)
        == (
            ipaddress.ip_address("198.19.1.0"),
            ipaddress.ip_address("198.19.2.0"),
        )
    )
    assert pa.peer_key == b.public_key and pb.peer_key == a.public_key
    assert decide(a, [a, b]).interval == 20.0


def test_pairs_without_a_psk_say_why() -> None:
    a, b = node("n0", "198.19.1.0/24"), node("n1", "198.19.2.0/24", pq=False)
    c = node("n2", "2001:db8:19:3::/64")
    assert decide(a, [a, b, c]).off == (("n1", PEER_NOT_TAKING_PART), ("n2", NO_COMMON_FAMILY))
    assert decide(b, [a, b]).off == (("n0", OPTED_OUT),)
    assert decide(a, [a, b], enabled=False).off == (("n1", DISABLED),)
    assert decide(a, [a, b], via=Transport.VXLAN).off == () == decide(a, [a, b], via=Transport.VXLAN).pairs
