"""Properties of plan() over generated clusters (tests/support/clusters.py): what every node decides
about its peers, pairs, routes and guards. diff() and convergence: test_diff_properties.py."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from meshd.core.conflicts import cluster_view
from meshd.core.model import EncryptionMode, Node
from tests.planner_cases import clash, outer
from tests.support.clusters import SETTINGS, Cluster, clusters


@SETTINGS
@given(clusters())
def test_no_self_peer(cluster: Cluster) -> None:
    for n in cluster.nodes:
        d = cluster.plan_for(n)
        assert n.name not in {p.node for p in d.pairs} | {p.node for p in d.peers}
        assert n.public_key not in {p.public_key for p in d.peers}
        assert not {r.dst for r in d.routes} & set(n.pod_cidrs)


@SETTINGS
@given(clusters())
def test_pair_decisions_are_symmetric(cluster: Cluster) -> None:
    views = {n.name: {p.node: p for p in cluster.plan_for(n).pairs} for n in cluster.nodes}
    assert all(set(v) == set(views) - {name} for name, v in views.items())
    for a, b in itertools.combinations(views, 2):
        ab, ba = views[a][b], views[b][a]
        assert ab.transport == ba.transport, (ab, ba)


@SETTINGS
@given(clusters())
def test_every_node_leaves_out_the_same_minimal_set(cluster: Cluster) -> None:
    views = [cluster_view(n, cluster.records) for n in cluster.nodes]
    out = set(views[0].excluded)
    assert all(set(v.excluded) == out for v in views)
    kept = [n for n in cluster.nodes if n.name not in out]
    assert not any(clash(x, y) for x, y in itertools.combinations(kept, 2))
    for n in cluster.nodes:
        covers_itself = any(a in c for c in n.pod_cidrs for a in outer(n))
        if n.name in out:  # for a reason, and letting it back in would bring a clash back
            assert covers_itself or any(clash(n, k) for k in kept)
        else:
            assert not covers_itself


@SETTINGS
@given(clusters())
def test_allowed_ips_disjoint_across_peers_and_routes_unique(cluster: Cluster) -> None:
    for n in cluster.nodes:
        d = cluster.plan_for(n)
        owned = [(p.node, net) for p in d.peers for net in p.allowed_ips]
        owned += [(n.name, net) for net in n.pod_cidrs]
        for (a, x), (b, y) in itertools.combinations(owned, 2):
            assert a == b or not (x.version == y.version and x.overlaps(y)), (a, x, b, y)
        assert len({r.dst for r in d.routes}) == len(d.routes)


@SETTINGS
@given(clusters(), st.randoms(use_true_random=False))
def test_plan_is_independent_of_record_order(cluster: Cluster, rnd: object) -> None:
    shuffled = list(cluster.records)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for n in cluster.nodes[:3]:
        assert cluster.plan_for(n, tuple(shuffled)) == cluster.plan_for(n)


def _selected(cluster: Cluster, n: Node) -> bool:
    return cluster.config.node_selector.matches(n.labels)


@SETTINGS
@given(clusters())
def test_required_guards_every_selected_peer_and_never_blocks_a_path(cluster: Cluster) -> None:
    """Under Required every selected peer's pod CIDR is guarded, unless the guard would cut our own pods,
    a tunnel, or a peer in the mesh; under Enabled and Disabled there are no guards at all. A guard never
    shadows a route we install, and a guarded destination is never routed other than over WireGuard."""
    addresses = {a for n in cluster.nodes for a in outer(n)}
    for n in cluster.nodes[:4]:
        d = cluster.plan_for(n)
        if cluster.config.mode is not EncryptionMode.REQUIRED or not _selected(cluster, n):
            assert d.guards == frozenset()
            continue
        routed = [r.dst for r in d.routes]
        for peer in cluster.nodes:
            if peer is n or not _selected(cluster, peer):
                continue
            for cidr in peer.pod_cidrs:
                cuts = any(cidr.version == c.version and cidr.overlaps(c) for c in (*n.pod_cidrs, *routed))
                if cidr not in routed and not cuts and not any(a in cidr for a in addresses):
                    assert cidr in d.guards, (n.name, peer.name, cidr)
        for guard in d.guards:
            assert not any(g.version == guard.version and guard.overlaps(g) for g in n.pod_cidrs)
            assert not any(a in guard for a in addresses)
            inside = [r for r in routed if guard.version == r.version and guard != r]
            assert not any(guard.subnet_of(r) for r in inside)  # type: ignore[arg-type]
        assert all(r.dev == "meshd0" for r in d.routes if r.dst in d.guards)
