"""The planner's conflict handling, table-driven: invalid records, duplicate keys and MACs, overlapping
pod CIDRs. The local node is node-a unless a case says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from meshd.model import InvalidNode
from tests.planner_cases import NONE, VX, WG, Case, check, node, reason

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
    "cidr-overlap-with-local": Case(
        (node(2, cidrs=("198.19.1.128/25",)), node(3)),
        {"node-b": NONE, "node-c": WG},
        {"198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-c"},
        problems={("pod-cidr-conflict", ("node-a", "node-b"))},
    ),
    "cidr-overlap-between-remotes-greater-name-left-out": Case(
        (node(3, cidrs=("198.19.2.0/23",)), node(2)),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={("pod-cidr-conflict", ("node-b", "node-c"))},
    ),
    "local-is-the-claimant-and-left-out": Case(
        (node(2, cidrs=("198.19.3.0/24",)), node(1, cidrs=("198.19.9.0/24",))),
        {"node-a": NONE, "node-b": NONE},
        {},
        peers=set(),
        fallback_nodes=set(),
        me=node(3),
        problems={("pod-cidr-conflict", ("node-b", "node-c"))},
    ),
    "invalid-records-are-reported-not-peers": Case(
        (node(2), InvalidNode("node-z", "bad-public-key", "public key is not valid base64")),
        {"node-b": WG},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes={"node-b"},
        problems={("invalid-node", ("node-z",))},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    check(case)


REASONS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "conflict": ("cidr-overlap-with-local", "node-b", lambda r: "198.19.1.128/25" in r),
}


@pytest.mark.parametrize(("case_id", "peer", "check_reason"), REASONS.values(), ids=REASONS.keys())
def test_reasons_explain_the_conflict(case_id: str, peer: str, check_reason: Callable[[str], bool]) -> None:
    assert check_reason(reason(CASES[case_id], peer))
