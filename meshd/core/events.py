"""Which Events a pass calls for (meshd/agent/events.py records them, deduplicated and rate-limited). Pure.

Each agent speaks about its own Node (a Required violation on it); the agent holding the MeshConfig-status
lease speaks for the cluster (conflicts the planner resolved, named on each node left out, and a rejected
MeshConfig): every node computes the same conflicts, so one speaker is enough and a conflict is one Event
whatever the cluster's size."""

from __future__ import annotations

from collections.abc import Iterable

from meshd.core.guard import guard_violations
from meshd.core.ports import EventRecord
from meshd.core.state import ActualState, DesiredState, Problem

WARNING = "Warning"
KEY_CREATED, KEY_ROTATED = "KeyCreated", "KeyRotated"
PEER_CONFLICT, COPIED_KEY = "PeerConflict", "CopiedKeyDetected"
REQUIRED_VIOLATION, MESHCONFIG_REJECTED = "RequiredViolation", "MeshConfigRejected"
CLUSTER_CONFLICTS = frozenset(
    {
        "duplicate-node-name",
        "duplicate-public-key",
        "duplicate-vxlan-mac",
        "pod-cidr-conflict",
        "pod-cidr-covers-underlay",
        "local-node-unusable",
    }
)


def local_events(me: str, desired: DesiredState, actual: ActualState) -> list[EventRecord]:
    """About our own Node: Required violations (foreign routes past a guard)."""
    return [
        EventRecord("Node", me, REQUIRED_VIOLATION, p.detail, WARNING, me)
        for p in guard_violations(desired.guards, actual.foreign_routes)
    ]


def cluster_events(me: str, problems: Iterable[Problem]) -> list[EventRecord]:
    """Nodes left out by a conflict (each on that Node), said once for the cluster by the lease holder."""
    out = []
    for p in problems:
        if p.kind == "copied-public-key":
            reason = COPIED_KEY
        elif p.kind in CLUSTER_CONFLICTS:
            reason = PEER_CONFLICT
        else:
            continue
        out += [
            EventRecord("Node", n, reason, f"left out ({p.kind}): {p.detail}", WARNING, me) for n in p.nodes
        ]
    return out


def rejected_event(me: str, why: str) -> EventRecord:
    return EventRecord("MeshConfig", "default", MESHCONFIG_REJECTED, why, WARNING, me)


def key_event(me: str, public_key: str, *, rotated: bool = False) -> EventRecord:
    """A new WireGuard key (created at first start; `rotated`: replaced by rotation). Public half only."""
    what = "rotated to" if rotated else "created:"
    return EventRecord(
        "Node",
        me,
        KEY_ROTATED if rotated else KEY_CREATED,
        f"WireGuard key {what} public key {public_key}",
        "Normal",
        me,
    )
