"""The MeshNode status (`meshnodes.meshd.io`, one per node): what this node's last complete pass planned
and observed, per peer and in sum. Pure: `now` is a parameter, the result is a plain JSON-ready dict that
is equal from one pass to the next while nothing an operator cares about changed (so it is written only
on change: no per-handshake churn; a handshake time appears only once it is stale or never happened)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from meshd.core.local import Identity
from meshd.core.model import EncryptionMode, Node, Snapshot, Transport
from meshd.core.state import ActualState, DesiredState, ObservedPeer, PairDecision

API_VERSION, KIND = "meshd.io/v1alpha1", "MeshNode"
TRANSPORT_NAMES = {
    Transport.WIREGUARD: "WireGuard",
    Transport.VXLAN: "VXLAN",
    Transport.IPIP: "IPIP",
    Transport.NONE: "None",
}
_NODE, _RAW = attrgetter("node"), attrgetter("public_key.raw")
STALE_HANDSHAKE = 180.0
"""Seconds after which a WireGuard peer's last handshake is reported (WireGuard re-keys every 120 s)."""


@dataclass(frozen=True, slots=True)
class PeerFacts:
    """One peer as an operator reads it; `handshake` is "Stale", "Never" or None (fresh, or not WireGuard)."""

    node: str
    transport: Transport
    encrypted: bool
    reason: str | None
    handshake: str | None = None
    last_handshake: float | None = None
    psk: str | None = None  # the pair's post-quantum PSK state (active, stale, pending, off), if enabled


def rfc3339(ts: float) -> str:
    """Seconds since the epoch as Kubernetes writes times (UTC, whole seconds). Plain arithmetic (the civil
    calendar from a day count, H. Hinnant's algorithm): the core never imports a clock module."""
    days, secs = divmod(int(ts), 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day, month = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}T{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}Z"


def _should_encrypt(snapshot: Snapshot, me: str) -> frozenset[str]:
    """Peers whose pair the MeshConfig wants encrypted (mode not Disabled, both nodes selected)."""
    config = snapshot.config
    if config.mode is EncryptionMode.DISABLED:
        return frozenset()
    nodes = {r.name: r for r in snapshot.nodes if isinstance(r, Node)}
    own = nodes.get(me)
    if own is not None and not config.node_selector.matches(own.labels):
        return frozenset()
    return frozenset(n for n, r in nodes.items() if config.node_selector.matches(r.labels))


def peer_facts(
    desired: DesiredState,
    actual: ActualState,
    *,
    now: float,
    stale_after: float = STALE_HANDSHAKE,
    psk: Mapping[str, str] | None = None,
) -> tuple[PeerFacts, ...]:
    """Every pair of the plan, with the handshake state of the WireGuard ones (from the observed device)
    and, given `psk` (peer -> state), their PSK state."""
    keys = {p.node: p.public_key for p in desired.peers}
    seen: dict[Any, ObservedPeer] = {
        p.public_key: p for p in (actual.wireguard.peers if actual.wireguard else ())
    }
    states = psk or {}
    return tuple(
        _facts(pair, seen.get(keys.get(pair.node)), now=now, stale_after=stale_after, psk=states)
        for pair in desired.pairs
    )


Kept = tuple[PairDecision, ObservedPeer | None, str | None, bool, PeerFacts, dict[str, Any]]
"""A pair's decision, observed peer, PSK state and handshake staleness, and the facts and entry made of them."""


@dataclass
class PeerMemo:
    """The per-peer facts and entries of the last status, for the next: a pair whose decision and
    observed peer are the same objects, with the same PSK state and handshake staleness, keeps its facts
    and its entry (the very dict), so a change of one peer builds one entry. Always what `peer_facts`
    and `_peer_entry` give (tests/test_status_objects.py holds them equal over random histories)."""

    kept: dict[str, Kept] = field(default_factory=dict)

    def entries(
        self,
        desired: DesiredState,
        actual: ActualState,
        *,
        now: float,
        stale_after: float,
        psk: Mapping[str, str],
    ) -> tuple[list[PeerFacts], list[dict[str, Any]]]:
        keys = dict(zip(map(_NODE, desired.peers), map(_RAW, desired.peers), strict=True))
        observed = actual.wireguard.peers if actual.wireguard else ()
        seen = dict(zip(map(_RAW, observed), observed, strict=True))
        kept, self.kept = self.kept, {}
        for pair in desired.pairs:
            peer, state = seen.get(keys.get(pair.node)), psk.get(pair.node)
            last = peer.last_handshake if peer else None
            stale = now - last > stale_after if last else False
            held = kept.get(pair.node)
            if held is None or held[0] is not pair or held[1] is not peer or held[2:4] != (state, stale):
                facts = _facts(pair, peer, now=now, stale_after=stale_after, psk=psk)
                entry = _peer_entry(facts)
                held = (pair, peer, state, stale, facts, held[5] if held and held[5] == entry else entry)
            self.kept[pair.node] = held
        made = self.kept.values()
        if len(made) != len(desired.pairs):  # a peer named twice: as the whole computation has it
            self.kept = {}
            whole = list(peer_facts(desired, actual, now=now, stale_after=stale_after, psk=psk))
            return whole, [_peer_entry(f) for f in whole]
        return [k[4] for k in made], [k[5] for k in made]


def _facts(
    pair: PairDecision, seen: ObservedPeer | None, *, now: float, stale_after: float, psk: Mapping[str, str]
) -> PeerFacts:
    if pair.transport is not Transport.WIREGUARD:
        return PeerFacts(pair.node, pair.transport, False, pair.reason)
    last = seen.last_handshake if seen else None
    state = psk.get(pair.node)
    if not last:
        return PeerFacts(pair.node, pair.transport, True, None, "Never", psk=state)
    if now - last > stale_after:
        return PeerFacts(pair.node, pair.transport, True, None, "Stale", last, state)
    return PeerFacts(pair.node, pair.transport, True, None, psk=state)


def _peer_entry(f: PeerFacts) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "node": f.node,
        "transport": TRANSPORT_NAMES[f.transport],
        "encrypted": f.encrypted,
    }
    if f.reason:
        entry["reason"] = f.reason
    if f.handshake:
        entry["handshake"] = f.handshake
    if f.last_handshake:
        entry["lastHandshakeTime"] = rfc3339(f.last_handshake)
    if f.psk:
        entry["psk"] = f.psk
    return entry


def summary(facts: Sequence[PeerFacts]) -> dict[str, int]:
    unreachable = sum(1 for f in facts if f.transport is Transport.NONE)
    encrypted = sum(1 for f in facts if f.encrypted)
    return {
        "peers": len(facts),
        "encrypted": encrypted,
        "unencrypted": len(facts) - encrypted - unreachable,
        "unreachable": unreachable,
    }


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def conditions(
    facts: Sequence[PeerFacts], should: frozenset[str], mode: EncryptionMode
) -> list[dict[str, str]]:
    """`Ready`: every peer has a pod route. `Encrypted`: every pair the MeshConfig wants encrypted is."""
    unreachable = sorted(f.node for f in facts if f.transport is Transport.NONE)
    ready = _condition("Ready", True, "Applied", "the MeshConfig is applied and every peer has a pod route")
    if unreachable:
        ready = _condition("Ready", False, "PeersUnreachable", "no pod route to " + ", ".join(unreachable))
    missing = sorted(f.node for f in facts if f.node in should and not f.encrypted)
    if mode is EncryptionMode.DISABLED:
        enc = _condition("Encrypted", False, "EncryptionDisabled", "the MeshConfig disables encryption")
    elif missing:
        enc = _condition("Encrypted", False, "PairsUnencrypted", "not encrypted: " + ", ".join(missing))
    else:
        enc = _condition("Encrypted", True, "AllPairsEncrypted", "every pair that should be encrypted is")
    return [ready, enc]


def with_transitions(
    new: Iterable[dict[str, str]], old: Iterable[Mapping[str, Any]], *, now: float
) -> list[dict[str, str]]:
    """Conditions with `lastTransitionTime`: kept from `old` while the status did not change."""
    before = {str(c.get("type")): c for c in old}
    out = []
    for c in new:
        prev = before.get(c["type"])
        same = prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime")
        out.append(
            {**c, "lastTransitionTime": str(prev["lastTransitionTime"]) if same and prev else rfc3339(now)}
        )
    return out


def meshnode_status(
    identity: Identity,
    snapshot: Snapshot,
    last: tuple[DesiredState, ActualState],
    *,
    now: float,
    previous: Mapping[str, Any] | None = None,
    stale_after: float = STALE_HANDSHAKE,
    psk: Mapping[str, str] | None = None,
    memo: PeerMemo | None = None,
) -> dict[str, Any]:
    """The `status` of our MeshNode after a pass that applied `snapshot.config`. `previous`: the status
    last written (its condition transition times are kept). `psk`: peer -> post-quantum PSK state.
    `memo`: the per-peer entries of the last status, kept for the next (PeerMemo)."""
    desired, actual = last
    if memo is None:
        facts = list(peer_facts(desired, actual, now=now, stale_after=stale_after, psk=psk))
        entries = [_peer_entry(f) for f in facts]
    else:
        facts, entries = memo.entries(desired, actual, now=now, stale_after=stale_after, psk=psk or {})
    plain = all(f.encrypted for f in facts)  # then nobody is missing: who should be need not be known
    should = frozenset() if plain else _should_encrypt(snapshot, identity.name)
    conds = conditions(facts, should, snapshot.config.mode)
    status: dict[str, Any] = {
        "observedGeneration": snapshot.config.generation,
        "mode": snapshot.config.mode.value,
        "summary": summary(facts),
        "peers": entries,
        "conditions": with_transitions(conds, (previous or {}).get("conditions") or (), now=now),
    }
    if identity.public_key is not None:
        status["publicKey"] = identity.public_key.base64
    return status


def meshnode_object(name: str, uid: str | None, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The MeshNode named like its Node; with the Node's `uid`, owned by it (deleted with it)."""
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "meshd"}}
    if uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]
    obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}
    if status is not None:
        obj["status"] = dict(status)
    return obj
