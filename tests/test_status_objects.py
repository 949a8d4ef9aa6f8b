"""The MeshNode status, the MeshConfig status, Event dedup and the graph, as pure functions and fakes."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from keys.values import PrivateKey, PublicKey
from meshd.agent.events import EventRecorder
from meshd.core.events import cluster_events, key_event, local_events
from meshd.core.graph import graph_dot
from meshd.core.local import Identity
from meshd.core.meshconfig_status import meshconfig_status
from meshd.core.meshnode import PeerMemo, meshnode_status, rfc3339
from meshd.core.model import EncryptionMode, LabelSelector, MeshConfig, Node, Snapshot, Transport
from meshd.core.ports import EventRecord
from meshd.core.state import (
    ActualState,
    DesiredState,
    ObservedPeer,
    ObservedWireGuard,
    PairDecision,
    PeerSpec,
    Problem,
    Route,
)

NOW = 1_800_000_000.0
ME = Identity(name="a", public_key=PrivateKey.generate().public_key())
KB, KC = PrivateKey.generate().public_key(), PrivateKey.generate().public_key()


def node(name: str, *labels: tuple[str, str]) -> Node:
    i = ord(name) - ord("a") + 1
    return Node(
        name, ipaddress.ip_address(f"198.18.0.{i}"), (ipaddress.ip_network(f"198.19.{i}.0/24"),), labels
    )


def state(
    handshake_b: float | None, c_transport: Transport = Transport.VXLAN
) -> tuple[DesiredState, ActualState]:
    pairs = (
        PairDecision("b", Transport.WIREGUARD, "encrypted with WireGuard"),
        PairDecision("c", c_transport, "c lacks WireGuard; using VXLAN"),
    )
    peers = (PeerSpec(KB, None, frozenset(), node="b"),)
    seen = (ObservedPeer(KB, None, frozenset(), last_handshake=handshake_b),)
    wg = ObservedWireGuard("meshd0", ME.public_key, 51820, 1420, peers=seen)
    return DesiredState(peers=peers, pairs=pairs), ActualState(wireguard=wg)


def snap(mode: EncryptionMode = EncryptionMode.ENABLED, selector: LabelSelector | None = None) -> Snapshot:
    config = MeshConfig(mode=mode, node_selector=selector or LabelSelector(), generation=4)
    return Snapshot((node("a", ("pool", "x")), node("b", ("pool", "x")), node("c")), config, True)


def conds(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_meshnode_status_peers_summary_conditions() -> None:
    st = meshnode_status(ME, snap(), state(NOW - 10), now=NOW)
    assert st["peers"] == [
        {"node": "b", "transport": "WireGuard", "encrypted": True},
        {"node": "c", "transport": "VXLAN", "encrypted": False, "reason": "c lacks WireGuard; using VXLAN"},
    ]
    assert st["summary"] == {"peers": 2, "encrypted": 1, "unencrypted": 1, "unreachable": 0}
    assert st["observedGeneration"] == 4 and st["publicKey"] == ME.public_key.base64  # type: ignore[union-attr]
    assert conds(st) == {"Ready": ("True", "Applied"), "Encrypted": ("False", "PairsUnencrypted")}


@pytest.mark.parametrize(
    ("handshake", "entry"),
    [
        (NOW - 10, {}),
        (None, {"handshake": "Never"}),
        (NOW - 600, {"handshake": "Stale", "lastHandshakeTime": "2027-01-15T07:50:00Z"}),
    ],
    ids=["fresh-is-quiet", "never", "stale"],
)
def test_handshake_time_only_when_stale_or_never(handshake: float | None, entry: dict[str, str]) -> None:
    st = meshnode_status(ME, snap(), state(handshake), now=NOW)
    assert st["peers"][0] == {"node": "b", "transport": "WireGuard", "encrypted": True, **entry}


def test_fresh_handshakes_do_not_change_the_status() -> None:
    """A re-handshake every two minutes must not mean a write: the status is equal."""
    first = meshnode_status(ME, snap(), state(NOW - 100), now=NOW)
    assert meshnode_status(ME, snap(), state(NOW + 20), now=NOW + 30, previous=first) == first


def test_encrypted_condition_follows_what_should_be_encrypted() -> None:
    outside = LabelSelector(match_labels=(("pool", "x"),))  # c is outside the selector: VXLAN is expected
    assert conds(meshnode_status(ME, snap(selector=outside), state(NOW), now=NOW))["Encrypted"] == (
        "True",
        "AllPairsEncrypted",
    )
    disabled = meshnode_status(ME, snap(EncryptionMode.DISABLED), state(NOW), now=NOW)
    assert conds(disabled)["Encrypted"] == ("False", "EncryptionDisabled")
    required = meshnode_status(ME, snap(EncryptionMode.REQUIRED), state(NOW, Transport.NONE), now=NOW)
    assert conds(required)["Ready"] == ("False", "PeersUnreachable")
    assert required["summary"]["unreachable"] == 1 and required["peers"][1]["transport"] == "None"


def test_transition_times_are_kept_while_the_condition_holds() -> None:
    first = meshnode_status(ME, snap(), state(NOW), now=NOW)
    later = meshnode_status(ME, snap(EncryptionMode.DISABLED), state(NOW), now=NOW + 60, previous=first)
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["Ready"] == first["conditions"][0]["lastTransitionTime"]  # still True
    assert times["Encrypted"] == first["conditions"][1]["lastTransitionTime"]  # False -> False


def meshnode(name: str, generation: int, ready: bool, encrypted: bool) -> dict[str, Any]:
    flag = {True: "True", False: "False"}
    c = [{"type": "Ready", "status": flag[ready]}, {"type": "Encrypted", "status": flag[encrypted]}]
    return {"metadata": {"name": name}, "status": {"observedGeneration": generation, "conditions": c}}


def test_meshconfig_status_counts_nodes_of_the_current_generation() -> None:
    nodes = [meshnode("a", 5, True, True), meshnode("b", 5, True, False), meshnode("c", 4, True, True)]
    st = meshconfig_status(5, nodes, rejected=None, now=NOW)
    assert st["nodes"] == {"total": 3, "applied": 2, "ready": 2, "encrypted": 1}
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Accepted": "True", "Applied": "False"}
    bad = meshconfig_status(6, nodes, rejected="spec.fallback: expected one of ...", now=NOW, previous=st)
    accepted = next(c for c in bad["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"], accepted["observedGeneration"]) == (
        "False",
        "Rejected",
        6,
    )


class Store:
    def __init__(self) -> None:
        self.writes: list[tuple[EventRecord, int]] = []

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        self.writes.append((event, count))


def test_events_are_edge_triggered_deduplicated_and_rate_limited() -> None:
    clock = [NOW]
    store = Store()
    rec = EventRecorder(store, repeat_after=30, burst=2, refill=10, clock=lambda: clock[0])  # type: ignore[arg-type]
    conflict = Problem("pod-cidr-conflict", ("x",), "x overlaps b")
    for _ in range(5):  # the same cause pass after pass: one occurrence
        rec.observe("cluster", cluster_events("a", [conflict]))
        asyncio.run(rec.flush())
    assert [(e.reason, e.name, n) for e, n in store.writes] == [("PeerConflict", "x", 1)]
    rec.observe("cluster", [])  # gone, then back: the same Event, count 2, but not before repeat_after
    rec.observe("cluster", cluster_events("a", [conflict]))
    asyncio.run(rec.flush())
    assert len(store.writes) == 1
    clock[0] += 31
    asyncio.run(rec.flush())
    assert store.writes[-1][1] == 2 and len(store.writes) == 2
    for i in range(10):  # a burst of new causes: the token bucket lets a few through, the rest wait
        rec.emit(EventRecord("Node", f"n{i}", "KeyCreated", "k"))
    asyncio.run(rec.flush())
    assert len(store.writes) < 2 + 10


def test_graph_names_every_node_and_marks_pairs() -> None:
    a = {"metadata": {"name": "a"}, "status": {"peers": [
        {"node": "b", "transport": "WireGuard", "encrypted": True, "handshake": "Never"},
        {"node": "c", "transport": "None", "encrypted": False}]}}  # fmt: skip
    b = {
        "metadata": {"name": "b"},
        "status": {"peers": [{"node": "a", "transport": "VXLAN", "encrypted": False}]},
    }
    dot = graph_dot([a, b])
    assert '"c" [label="c\\n(no MeshNode)"' in dot
    assert 'label="a: WireGuard / b: VXLAN"' in dot  # the two ends disagree
    assert 'label="unreachable", color="#c62828"' in dot


@pytest.mark.parametrize("ts", [0, 951_782_400, 1_709_164_800 + 3599, NOW, 4_102_444_800, 4_107_542_399])
def test_rfc3339_matches_datetime(ts: float) -> None:
    import datetime as dt

    assert rfc3339(ts) == dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_event_causes_of_a_pass() -> None:
    guarded = ipaddress.ip_network("198.19.2.0/24")
    foreign = Route(ipaddress.ip_network("198.19.2.0/25"), "eth0")
    (violation,) = local_events(
        "a", DesiredState(guards=frozenset({guarded})), ActualState(foreign_routes=frozenset({foreign}))
    )
    assert (violation.kind, violation.name, violation.reason, violation.type) == (
        "Node",
        "a",
        "RequiredViolation",
        "Warning",
    )
    copied = Problem("copied-public-key", ("x",), "x publishes b's key")
    invalid = Problem("invalid-node", ("y",), "bad")
    assert [(e.name, e.reason) for e in cluster_events("a", [copied, invalid])] == [
        ("x", "CopiedKeyDetected")
    ]
    rotated = key_event("a", "k" * 43 + "=", rotated=True)
    assert (rotated.reason, rotated.type) == ("KeyRotated", "Normal") and "k" * 43 in rotated.message


def _history_state(rng: random.Random, names: list[str]) -> tuple[DesiredState, ActualState]:
    """A random plan and device over `names`: a pair per name, WireGuard ones with a peer, handshakes of
    every age (and none); the caller mutates a few entries per step and shares the rest."""
    pairs, peers, seen = [], [], []
    for i, name in enumerate(names):
        transport = rng.choice([Transport.WIREGUARD, Transport.WIREGUARD, Transport.VXLAN, Transport.NONE])
        pairs.append(PairDecision(name, transport, f"why {rng.randrange(3)}"))
        if transport is Transport.WIREGUARD:
            key = PublicKey(bytes([i + 1]) * 32)
            peers.append(PeerSpec(key, None, frozenset(), node=name))
            if rng.random() < 0.8:
                seen.append(ObservedPeer(key, None, frozenset(), last_handshake=rng.choice(_HANDSHAKES)))
    wg = ObservedWireGuard("meshd0", ME.public_key, 51820, 1420, peers=tuple(seen))
    return DesiredState(peers=tuple(peers), pairs=tuple(pairs)), ActualState(wireguard=wg)


_HANDSHAKES = [None, 0.0, NOW - 10, NOW - 170, NOW - 179.5, NOW - 400]


def test_the_status_from_kept_peer_entries_equals_the_whole_status_after_any_history() -> None:
    """Pairs and device peers change a few at a time (the rest shared), time passes so handshakes turn
    stale, PSK states change: the status built with the memo equals the one built whole, and an unchanged
    peer keeps its entry (the very dict)."""
    for seed in range(100):
        rng = random.Random(seed)
        names = ["b", "c", "d", "e", "f", "g"]
        desired, actual = _history_state(rng, names)
        memo, now, written = PeerMemo(), NOW, None
        selector = rng.choice([LabelSelector(), LabelSelector((("pool", "x"),))])
        for _ in range(10):
            fresh_desired, fresh_actual = _history_state(rng, names)
            pick = set(rng.sample(names, rng.randrange(3)))
            pairs = tuple(
                p if p.node not in pick else q
                for p, q in zip(desired.pairs, fresh_desired.pairs, strict=True)
            )
            desired = replace(fresh_desired, pairs=pairs) if pick else desired
            actual = fresh_actual if rng.random() < 0.3 else actual
            now += rng.choice([0.0, 5.0, 100.0])
            psk = {n: rng.choice(["active", "off"]) for n in rng.sample(names, rng.randrange(3))}
            shot = snap(selector=selector)
            kept = memo.kept.copy()
            got = meshnode_status(ME, shot, (desired, actual), now=now, previous=written, psk=psk, memo=memo)
            whole = meshnode_status(ME, shot, (desired, actual), now=now, previous=written, psk=psk)
            assert got == whole, f"seed {seed}"
            for entry, name in zip(got["peers"], memo.kept, strict=True):
                if kept.get(name) is not None and kept[name][5] == entry:
                    assert entry is kept[name][5], "an unchanged entry is the same dict"
            written = got
