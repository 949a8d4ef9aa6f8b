"""Property: one more node record added to a valid cluster changes only the pairs of that record and of
the nodes it clashes with, and leaves at most one of those out (none when it clashes with several).
The record's pod CIDRs and addresses are drawn around the cluster's (subnets and supernets of its pod
CIDRs, addresses inside them, anything in the test ranges), and some of its fields may be garbage."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshd.core.codec import decode_node, encode_node
from meshd.core.conflicts import cluster_view
from meshd.core.model import (
    Endpoint,
    InvalidNode,
    IPNetwork,
    LocalNode,
    MeshConfig,
    Node,
    Snapshot,
    Transport,
)
from meshd.core.planner import plan
from tests.planner_cases import clash
from tests.strategies import fuzzed_annotations, json_values, mesh_configs, nodes, valid_clusters

V4_AREA, V6_AREA = ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8:18::/47")


@st.composite
def network_in(draw: st.DrawFn, area: IPNetwork) -> IPNetwork:
    prefix = draw(st.integers(area.prefixlen, area.max_prefixlen))
    offset = draw(st.integers(0, area.num_addresses - 1))
    return ipaddress.ip_network(f"{area.network_address + offset}/{prefix}", strict=False)


def address_in(area: IPNetwork) -> st.SearchStrategy[Any]:
    return st.integers(1, area.num_addresses - 2).map(lambda i: area.network_address + i)


@st.composite
def near(draw: st.DrawFn, cluster: list[Node]) -> IPNetwork:
    """A network that nests with one of the cluster's pod CIDRs (a subnet or a supernet of it)."""
    net = draw(st.sampled_from([c for n in cluster for c in n.pod_cidrs]))
    low = 8 if net.version == 4 else 32
    prefix = draw(st.integers(max(low, net.prefixlen - 4), min(net.max_prefixlen, net.prefixlen + 4)))
    return ipaddress.ip_network(f"{net.network_address}/{prefix}", strict=False)


@st.composite
def extra_records(draw: st.DrawFn, cluster: list[Node]) -> dict[str, Any]:
    base = draw(nodes())
    cidrs = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    area = {4: V4_AREA, 6: V6_AREA}
    pods = {v: draw(network_in(area[v]) | near(cluster)) for v in cidrs}
    addresses = address_in(V4_AREA) | address_in(V6_AREA) | near(cluster).map(lambda n: n.network_address + 1)
    host = draw(st.none() | addresses)
    extra = replace(
        base,
        name="EXTRA",  # never one of the generated (lower-case) names
        pod_cidrs=tuple({n.version: n for n in pods.values()}.values()),  # at most one per family
        underlay_ip=draw(addresses),
        endpoint=None if host is None else Endpoint(host, 51820),
        public_key=None,
        vxlan_mac=None,
    )
    obj = copy.deepcopy(encode_node(extra))
    garbage = draw(st.sampled_from(["none", "annotations", "field"]))
    if garbage == "annotations":
        obj["metadata"]["annotations"].update(draw(fuzzed_annotations()))
    elif garbage == "field":
        part, name = draw(
            st.sampled_from([("spec", "podCIDRs"), ("status", "addresses"), ("metadata", "labels")])
        )
        obj[part][name] = draw(json_values(max_leaves=6))
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_clusters(min_size=2, max_size=6), st.data(), mesh_configs())
def test_one_more_record_changes_only_its_pairs_and_those_it_clashes_with(
    cluster: list[Node], data: st.DataObject, config: MeshConfig
) -> None:
    record = decode_node(data.draw(extra_records(cluster)))
    affected = {n.name for n in cluster if isinstance(record, Node) and clash(record, n)}
    out = set(cluster_view(cluster[0], [*cluster, record]).excluded)
    event(f"{type(record).__name__}, clashes with {min(len(affected), 2)}, left out: {len(out)}")
    assert not out & {n.name for n in cluster} - affected
    if len(affected) > 1:  # one record against many: the record goes, none of the many
        assert out & affected == set()
    assert len(out & affected) <= 1
    for n in cluster:
        if n.name in affected:
            continue
        before = plan(Snapshot.of(cluster, config), LocalNode(n))
        after = plan(Snapshot.of([*cluster, record], config), LocalNode(n))

        def unaffected(state: Any, n_: str = n.name) -> tuple[Any, ...]:
            keep = {m.name for m in cluster} - affected
            cidrs = {c for m in cluster if m.name in keep for c in m.pod_cidrs}
            return (
                {p for p in state.pairs if p.node in keep},
                {p for p in state.peers if p.node in keep},
                {r for r in state.routes if r.dst in cidrs},
            )

        assert unaffected(after) == unaffected(before)
        extra_pairs = [p for p in after.pairs if p.node == record.name]
        if isinstance(record, InvalidNode) or record.name in out:
            assert all(p.transport is Transport.NONE for p in extra_pairs)
