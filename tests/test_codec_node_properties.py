"""Node records <-> Node values, as properties: round trips, and garbage never raises (whole JSON values,
one field replaced, almost-right annotations). The tables are in test_codec_node.py."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.codec import decode_node, encode_node
from meshd.core.model import InvalidNode, Node
from tests.strategies import fuzzed_annotations, json_values, nodes, valid_clusters
from tests.test_codec_node import assert_good_detail


@given(nodes())
def test_round_trip(node: Node) -> None:
    assert decode_node(encode_node(node)) == node


@given(valid_clusters(min_size=1))
def test_round_trip_clusters(cluster: list[Node]) -> None:
    assert [decode_node(encode_node(n)) for n in cluster] == cluster


@given(json_values())
def test_never_raises_on_any_json(obj: object) -> None:
    record = decode_node(obj)  # type: ignore[arg-type]
    assert isinstance(record, Node | InvalidNode)
    if isinstance(record, InvalidNode):
        assert_good_detail(record)


FIELDS = [
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("spec",),
    ("spec", "podCIDRs"),
    ("spec", "podCIDR"),
    ("status",),
    ("status", "addresses"),
]


@given(nodes(), st.sampled_from(FIELDS), json_values(max_leaves=8))
def test_never_raises_with_one_field_replaced(node: Node, path: tuple[str, ...], value: object) -> None:
    obj = copy.deepcopy(encode_node(node))
    parent = obj
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    record = decode_node(obj)
    if isinstance(record, InvalidNode):
        assert_good_detail(record)
    else:
        assert decode_node(encode_node(record)) == record


@given(nodes(), fuzzed_annotations())
def test_almost_right_annotations(node: Node, fuzzed: dict[str, str]) -> None:
    obj = encode_node(node)
    obj["metadata"]["annotations"].update(fuzzed)
    record = decode_node(obj)
    assert record.name == node.name
    if isinstance(record, InvalidNode):
        assert_good_detail(record)
        fields = {
            "bad-public-key",
            "bad-endpoint",
            "bad-vxlan-mac",
            "bad-capabilities",
            "bad-observed-generation",
        }
        assert record.reason in fields
    else:
        assert (record.pod_cidrs, record.underlay_ip) == (node.pod_cidrs, node.underlay_ip)
        assert decode_node(encode_node(record)) == record
