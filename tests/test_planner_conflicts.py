"""The planner's conflict handling, table-driven: invalid records, duplicate keys and MACs, overlapping
pod CIDRs and pod CIDRs that cover an underlay address or endpoint (rules: meshd/overlaps.py). The local
node is node-a unless a case says otherwise. Properties: test_conflict_properties.py, test_properties.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

import pytest

from meshd.core.conflicts import cluster_view
from meshd.core.model import Endpoint, InvalidNode, Node
from meshd.core.overlaps import COVER, OVERLAP
from tests.planner_cases import NONE, VX, WG, Case, check, node, reason

UNUSABLE = "local-node-unusable"


def ep(node_: Node, host: str) -> Node:
    return replace(node_, endpoint=Endpoint(ipaddress.ip_address(host), 51820))


CASES = {
    "duplicate-keys-between-remotes": Case(
        (node(2), node(3, key_of=2), node(4)),
        {"node-b": VX, "node-c": VX, "node-d": WG},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan", "198.19.4.0/24": "meshd0"},
        peers={"node-d"},
        fallback_nodes={"node-b", "node-c", "node-d"},
        problems={("duplicate-public-key", ("node-b", "node-c"))},
    ),
    "duplicate-key-with-local-disables-our-wireguard": Case(
        (node(2, key_of=1), node(3)),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        problems={("duplicate-public-key", ("node-a", "node-b"))},
    ),
    "duplicate-vxlan-macs-get-no-vxlan": Case(
        (node(2, with_key=False), replace(node(3, with_key=False), vxlan_mac="02:00:00:00:00:02"), node(4)),
        {"node-b": NONE, "node-c": NONE, "node-d": WG},
        {"198.19.4.0/24": "meshd0"},
        peers={"node-d"},
        fallback_nodes={"node-d"},
        problems={
            ("duplicate-vxlan-mac", ("node-b", "node-c")),
            ("no-transport", ("node-b",)),
            ("no-transport", ("node-c",)),
        },
    ),
    "cidr-overlap-with-local-broader-remote-left-out": Case(
        (node(2, cidrs=("198.19.0.0/23",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={(OVERLAP, ("node-a", "node-b"))},
    ),
    # Was "cidr-overlap-with-local" with node-b left out: not symmetric (node-b would have left node-a
    # out), so the broader claimant goes wherever it is, and here that is this node.
    "cidr-overlap-with-local-broader-local-left-out": Case(
        (node(2, cidrs=("198.19.1.128/25",)), node(3)),
        {"node-b": NONE, "node-c": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        problems={(OVERLAP, ("node-a", "node-b"))},
    ),
    "cidr-overlap-between-remotes-greater-name-left-out": Case(
        (node(3, cidrs=("198.19.2.0/23",)), node(2)),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={(OVERLAP, ("node-b", "node-c"))},
    ),
    "local-is-the-claimant-and-left-out": Case(
        (node(2, cidrs=("198.19.3.0/24",)), node(1, cidrs=("198.19.9.0/24",))),
        {"node-a": NONE, "node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(3),
        problems={(OVERLAP, ("node-b", "node-c"))},
    ),
    "invalid-records-are-reported-not-peers": Case(
        (node(2), InvalidNode("node-z", "bad-public-key", "public key is not valid base64")),
        {"node-b": WG},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={("invalid-node", ("node-z",))},
    ),
    "equal-cidrs-greater-name-left-out": Case(
        (node(2, cidrs=("198.19.5.0/24",)), node(3, cidrs=("198.19.5.0/24",))),
        {"node-b": WG, "node-c": NONE},
        {"198.19.5.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={(OVERLAP, ("node-b", "node-c"))},
    ),
    "broad-claimant-with-the-least-name-left-out-not-the-many": Case(
        (node(1, cidrs=("198.19.0.0/16",)), node(3), node(4)),
        {"node-a": NONE, "node-c": WG, "node-d": WG},
        {"198.19.3.0/24": "meshd0", "198.19.4.0/24": "meshd0"},
        peers={"node-c", "node-d"},
        fallback_nodes={"node-c", "node-d"},
        me=node(2),
        problems={(OVERLAP, ("node-a", "node-b", "node-c", "node-d"))},
    ),
    "no-cascade-through-a-node-left-out": Case(  # b=10/8, a=10.1/16, c=10.2/16: only b goes
        (node(2, cidrs=("198.19.0.0/16",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={(OVERLAP, ("node-a", "node-b", "node-c"))},
    ),
    # b clashes with c and d and goes first; c and d then go for their clashes with e and f, so b
    # clashes with nobody left in the mesh and is let back in.
    "left-out-node-let-back-in-when-its-clashes-are-gone": Case(
        (
            node(2, cidrs=("2001:db8::/47",)),
            node(3, cidrs=("198.19.30.0/24", "2001:db8::/64")),
            node(4, cidrs=("198.19.40.0/24", "2001:db8:1::/64")),
            node(5, cidrs=("198.19.30.0/25",)),
            node(6, cidrs=("198.19.40.128/25",)),
        ),
        {"node-b": WG, "node-c": NONE, "node-d": NONE, "node-e": WG, "node-f": WG},
        {"2001:db8::/47": "meshd0", "198.19.30.0/25": "meshd0", "198.19.40.128/25": "meshd0"},
        peers={"node-b", "node-e", "node-f"},
        fallback_nodes={"node-b", "node-e", "node-f"},
        problems={(OVERLAP, ("node-b", "node-c", "node-e")), (OVERLAP, ("node-b", "node-d", "node-f"))},
    ),
    "pod-cidr-covers-other-underlays": Case(
        (node(2, cidrs=("198.18.0.0/24",), underlay="198.18.1.2"), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={(COVER, ("node-a", "node-b", "node-c"))},
    ),
    "pod-cidr-covers-its-own-underlay": Case(
        (node(2, cidrs=("198.18.0.2/32",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={(COVER, ("node-b",))},
    ),
    "pod-cidr-covers-a-wireguard-endpoint": Case(  # one clash each: the pod CIDR is broader, it goes
        (ep(node(2), "203.0.113.7"), node(3, cidrs=("203.0.113.0/24",))),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={(COVER, ("node-b", "node-c"))},
    ),
    "addresses-in-two-pod-cidrs-their-owner-left-out": Case(
        (ep(node(2, underlay="198.19.3.7"), "198.19.4.7"), node(3), node(4)),
        {"node-b": NONE, "node-c": WG, "node-d": WG},
        {"198.19.3.0/24": "meshd0", "198.19.4.0/24": "meshd0"},
        peers={"node-c", "node-d"},
        fallback_nodes={"node-c", "node-d"},
        problems={(COVER, ("node-b", "node-c", "node-d"))},
    ),
    "covering-claimant-is-out-before-overlaps-count": Case(
        (node(2, cidrs=("198.18.0.0/15",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={(COVER, ("node-b",))},
    ),
    "local-pod-cidr-covers-remote-underlays": Case(
        (node(2), node(3)),
        {"node-b": NONE, "node-c": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(1, cidrs=("198.18.0.2/31",)),
        problems={(COVER, ("node-a", "node-b", "node-c"))},
    ),
    "local-pod-cidr-unusable-by-peers": Case(
        (node(2), node(3)),
        {"node-b": NONE, "node-c": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(1, cidrs=("127.0.0.0/8",)),
        problems={(UNUSABLE, ("node-a",))},
    ),
    "local-underlay-unusable-by-peers": Case(
        (node(2), node(3, cidrs=("198.19.2.0/24",))),  # b and c clash, judged without us as peers do
        {"node-b": NONE, "node-c": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(1, underlay="169.254.0.1"),
        problems={(UNUSABLE, ("node-a",)), (OVERLAP, ("node-b", "node-c"))},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    check(case)


REASONS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "overlap-names-the-cidrs": (
        "cidr-overlap-with-local-broader-local-left-out",
        "node-b",
        lambda r: "198.19.1.128/25" in r and "198.19.1.0/24" in r and "node-a is left out" in r,
    ),
    "cover-says-why": ("pod-cidr-covers-other-underlays", "node-b", lambda r: "into the tunnel" in r),
    "endpoint-named-as-such": (
        "pod-cidr-covers-a-wireguard-endpoint",
        "node-c",
        lambda r: "endpoint 203.0.113.7" in r,
    ),
    "local-unusable": (
        "local-pod-cidr-unusable-by-peers",
        "node-b",
        lambda r: "own record" in r and "loopback" in r,
    ),
}


@pytest.mark.parametrize(("case_id", "peer", "check_reason"), REASONS.values(), ids=REASONS.keys())
def test_reasons_explain_the_conflict(case_id: str, peer: str, check_reason: Callable[[str], bool]) -> None:
    assert check_reason(reason(CASES[case_id], peer))


def test_cluster_view_exclusions_are_read_only() -> None:
    view = cluster_view(node(1), [node(2, cidrs=("198.19.0.0/16",)), node(3)])
    assert dict(view.excluded).keys() == {"node-b"}
    with pytest.raises(TypeError):
        view.excluded["node-c"] = "evicted"  # type: ignore[index]
    assert cluster_view(node(1), []).excluded == {}
