"""Equal address values read from different places are one shared object: a node record decoded twice,
a route message seen again in the next dump, the same network parsed from a UAPI reply and from the
datastore. Values stay correct (equal to what ipaddress builds) whatever the sharing."""

from __future__ import annotations

import ipaddress

from meshd.core.codec import decode_node, encode_node
from meshd.core.model import Endpoint, Node
from meshd.rtnl_msgs import HEADER, RouteRequest, decode_route
from overlay.uapi_get import parse_get

NET = ipaddress.ip_network("198.19.7.0/24")
UNDERLAY = ipaddress.ip_address("198.18.0.7")


def _record() -> dict[str, object]:
    return encode_node(Node("n7", UNDERLAY, (NET,), endpoint=Endpoint(UNDERLAY, 51820)))


def test_a_record_decoded_twice_shares_its_addresses() -> None:
    first, second = decode_node(_record()), decode_node(_record())
    assert isinstance(first, Node) and isinstance(second, Node)
    assert first.pod_cidrs == (NET,) and first.underlay_ip == UNDERLAY
    assert first.pod_cidrs[0] is second.pod_cidrs[0]
    assert first.underlay_ip is second.underlay_ip
    assert first.endpoint is not None and second.endpoint is not None
    assert first.endpoint.host is second.endpoint.host is first.underlay_ip


def test_a_route_message_seen_again_is_not_decoded_again_and_shares_the_datastores_network() -> None:
    wire = RouteRequest("replace", NET, oif=5, table=254, protocol=109).encode(1)
    payload = memoryview(wire)[HEADER.size :]
    first, again = decode_route(payload), decode_route(memoryview(bytes(payload)))
    assert (
        first is not None and first.dst == NET and (first.oif, first.table, first.protocol) == (5, 254, 109)
    )
    assert again is first
    node = decode_node(_record())
    assert isinstance(node, Node) and first.dst is node.pod_cidrs[0]


def test_a_uapi_reply_shares_the_networks_of_the_datastore() -> None:
    key = "11" * 32
    reply = parse_get(f"public_key={key}\nallowed_ip=198.19.7.0/24\nendpoint=198.18.0.7:51820\nerrno=0\n\n")
    (peer,) = reply.peers
    node = decode_node(_record())
    assert isinstance(node, Node)
    assert peer.allowed_ips == frozenset({NET})
    assert next(iter(peer.allowed_ips)) is node.pod_cidrs[0]
    assert peer.endpoint is not None and peer.endpoint.host is node.underlay_ip
