"""A copied public key: the node that proves it holds the key keeps WireGuard, the copier is left out of
WireGuard, every node computes the same, whatever the names and the order of the records. Keys nobody
proves (legacy key files) keep today's rule: every node publishing them loses WireGuard."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.proof import KeyProof, KeySeed
from meshd.core.codec import decode_node, encode_node
from meshd.core.conflicts import cluster_view
from meshd.core.model import EncryptionMode, LocalNode, MeshConfig, Node, NodeRecord, Snapshot, Transport
from meshd.core.planner import plan
from tests.planner_cases import NONE, VX, WG, Case, check, node, reason

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seed(i: int) -> KeySeed:
    return KeySeed(bytes([i]) * 32)


def proven(n: Node, s: KeySeed) -> Node:
    """`n` publishing the key derived from `s`, with its proof."""
    return replace(n, public_key=s.wireguard_key().public_key(), key_proof=s.prove(n.name))


def copier(n: Node, victim: Node, proof: KeyProof | None) -> Node:
    return replace(n, public_key=victim.public_key, key_proof=proof)


A, B, C, D = (proven(node(i), seed(i)) for i in range(1, 5))
COPY = "copied-public-key"
DUP = "duplicate-public-key"

CASES = {
    "copier-without-proof-is-left-out": Case(
        (B, copier(node(3), B, None), D),
        {"node-b": WG, "node-c": VX, "node-d": WG},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-vxlan", "198.19.4.0/24": "meshd0"},
        peers={"node-b", "node-d"},
        fallback_nodes={"node-b", "node-c", "node-d"},
        me=A,
        problems={(COPY, ("node-c",))},
    ),
    "copier-with-the-victims-proof-is-left-out": Case(
        (B, copier(node(3), B, B.key_proof)),
        {"node-b": WG, "node-c": VX},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-vxlan"},
        peers={"node-b"},
        fallback_nodes={"node-b", "node-c"},
        me=A,
        problems={(COPY, ("node-c",))},
    ),
    "copier-with-a-proof-of-its-own-other-key-is-left-out": Case(
        (B, copier(node(3), B, seed(3).prove("node-c"))),
        {"node-b": WG, "node-c": VX},
        {"198.19.2.0/24": "meshd0", "198.19.3.0/24": "meshd-vxlan"},
        peers={"node-b"},
        fallback_nodes={"node-b", "node-c"},
        me=A,
        problems={(COPY, ("node-c",))},
    ),
    "we-are-the-victim-and-keep-wireguard": Case(
        (copier(node(2), A, A.key_proof), C),
        {"node-b": VX, "node-c": WG},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd0"},
        peers={"node-c"},
        fallback_nodes={"node-b", "node-c"},
        me=A,
        problems={(COPY, ("node-b",))},
    ),
    "we-are-the-copier-and-leave-ourselves-out": Case(
        (B, C),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        me=copier(node(1), B, B.key_proof),
        problems={(COPY, ("node-a",))},
    ),
    "under-required-the-copier-gets-no-route-and-the-victim-keeps-its-own": Case(
        (B, copier(node(3), B, None)),
        {"node-b": WG, "node-c": NONE},
        {"198.19.2.0/24": "meshd0"},
        peers={"node-b"},
        fallback_nodes=set(),
        config=MeshConfig(mode=EncryptionMode.REQUIRED),
        me=A,
        problems={(COPY, ("node-c",)), ("encryption-unavailable", ("node-c",))},
    ),
    "nobody-proves-it-both-out-as-before": Case(
        (replace(B, key_proof=None), copier(node(3), B, None)),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        me=A,
        problems={(DUP, ("node-b", "node-c"))},
    ),
    "both-prove-it-a-cloned-seed-both-out": Case(
        (B, proven(node(3), seed(2))),
        {"node-b": VX, "node-c": VX},
        {"198.19.2.0/24": "meshd-vxlan", "198.19.3.0/24": "meshd-vxlan"},
        peers=set(),
        fallback_nodes={"node-b", "node-c"},
        me=A,
        problems={(DUP, ("node-b", "node-c"))},
    ),
}


def test_plans() -> None:
    for name, case in CASES.items():
        try:
            check(case)
        except AssertionError as exc:
            raise AssertionError(f"case {name}: {exc}") from exc


def test_the_reason_names_the_copier_and_the_holder() -> None:
    case = CASES["copier-with-the-victims-proof-is-left-out"]
    why = reason(case, "node-c")
    assert "node-c publishes a public key that another node proves it holds" in why
    problem = next(p for p in plan(Snapshot.of(case.remotes, case.config), LocalNode(case.me)).problems)
    assert "node-c publishes the public key" in problem.detail and "node-b proves it" in problem.detail


def test_a_published_proof_survives_the_codec_and_garbage_is_no_proof() -> None:
    back = decode_node(encode_node(B))
    assert back == B and B.key_proof is not None
    text = B.key_proof.encode()
    for garbage in ("", "v1:", text[:-1], text + "=", "v2" + text[2:], " " + text, 7, ["x"], None):
        obj = encode_node(B)
        obj["metadata"]["annotations"]["meshd.io/key-proof"] = garbage
        record = decode_node(obj)
        assert isinstance(record, Node) and record == replace(B, key_proof=None), garbage


@dataclass(frozen=True)
class Copy:
    """A cluster of proven (or legacy) nodes in which `copier` publishes `victim`'s key."""

    nodes: tuple[Node, ...]
    victim: str
    copier: str
    config: MeshConfig

    def records_seen_by(self, me: Node, rnd: random.Random) -> list[NodeRecord]:
        """What `me` reads: every other record through the codec, in any order."""
        records: list[NodeRecord] = [decode_node(encode_node(n)) for n in self.nodes if n is not me]
        rnd.shuffle(records)
        return records

    def plan_for(self, me: Node, rnd: random.Random) -> dict[str, Transport]:
        snap = Snapshot.of(self.records_seen_by(me, rnd), self.config)
        return {p.node: p.transport for p in plan(snap, LocalNode(me)).pairs}


NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), min_size=2, max_size=6, unique=True)
PROOFS = ("none", "victims", "own-seed", "garbage-bits")


@st.composite
def copies(draw: st.DrawFn) -> tuple[Copy, str, bool]:
    names = draw(NAMES)
    legacy = draw(st.booleans())  # the victim has no seed: a wg genkey key file
    raw = st.binary(min_size=32, max_size=32)
    seeds = [KeySeed(b) for b in draw(st.lists(raw, min_size=len(names), max_size=len(names), unique=True))]
    members = [proven(node(i + 1), s) for i, s in enumerate(seeds)]
    members = [
        replace(n, name=name, key_proof=seeds[i].prove(name))
        for i, (n, name) in enumerate(zip(members, names, strict=True))
    ]
    v, x = draw(st.permutations(range(len(names))))[:2]
    if legacy:
        members[v] = replace(members[v], key_proof=None)
    victim = members[v]
    how = draw(st.sampled_from(PROOFS))
    proof = {
        "none": None,
        "victims": victim.key_proof,
        "own-seed": seeds[x].prove(names[x]),
        "garbage-bits": KeyProof(bytes(32), bytes(64)),
    }[how]
    members[x] = copier(members[x], victim, proof)
    mode = draw(st.sampled_from(list(EncryptionMode)))
    return Copy(tuple(members), victim.name, members[x].name, MeshConfig(mode=mode)), how, legacy


@SETTINGS
@given(copies(), st.randoms(use_true_random=False))
def test_the_copier_is_left_out_and_the_victim_kept_by_every_node(
    arg: tuple[Copy, str, bool], rnd: random.Random
) -> None:
    copy, _how, legacy = arg
    views = [cluster_view(n, copy.records_seen_by(n, rnd)) for n in copy.nodes]
    assert all(v.key_copiers.keys() == views[0].key_copiers.keys() for v in views), "not symmetric"
    assert all(v.duplicate_keys == views[0].duplicate_keys for v in views), "not symmetric"
    plans = {n.name: copy.plan_for(n, rnd) for n in copy.nodes}
    for a, b in itertools.combinations(plans, 2):
        assert plans[a][b] == plans[b][a], (a, b)
    if legacy:  # nobody proves the key: today's rule, both out of WireGuard
        assert not views[0].key_copiers and len(views[0].duplicate_keys) == 1
        assert all(t is not Transport.WIREGUARD for t in plans[copy.victim].values())
    else:
        assert set(views[0].key_copiers) == {copy.copier} and not views[0].duplicate_keys
        wireguard = Transport.WIREGUARD if copy.config.mode is not EncryptionMode.DISABLED else None
        assert all(
            t is wireguard or (wireguard is None and t is Transport.VXLAN)
            for peer, t in plans[copy.victim].items()
            if peer != copy.copier
        )
    assert all(t is not Transport.WIREGUARD for t in plans[copy.copier].values())
