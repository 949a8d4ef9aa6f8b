"""core/v1 Events as meshd writes them (the file datastore writes the same objects to DIR/events).

One cause is one object: the name is derived from the object, the reason and the message, so the same
cause seen again (by this agent after a restart, or by the next MeshConfig-status lease holder) finds the
Event already there and only its `count` and `lastTimestamp` move. Events about cluster-scoped objects
(Node, MeshConfig) live in the `default` namespace, as the kubelet's do."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from meshd.core.meshnode import API_VERSION
from meshd.core.ports import EventRecord

EVENT_NAMESPACE = "default"
COMPONENT = "meshd"


def event_name(event: EventRecord) -> str:
    digest = hashlib.sha256(f"{event.kind}\0{event.reason}\0{event.message}".encode()).hexdigest()[:16]
    base = re.sub(r"[^a-z0-9.-]", "-", event.name.lower())[:200].strip(".-") or "meshd"
    return f"{base}.{digest}"


def involved(event: EventRecord, uid: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "apiVersion": "v1" if event.kind == "Node" else API_VERSION,
        "kind": event.kind,
        "name": event.name,
    }
    if uid:
        ref["uid"] = uid
    return ref


def event_object(event: EventRecord, *, count: int, first: str, last: str, uid: str | None) -> dict[str, Any]:
    """A core/v1 Event; `first`/`last` are RFC 3339 times."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(event), "namespace": EVENT_NAMESPACE},
        "involvedObject": involved(event, uid),
        "reason": event.reason,
        "message": event.message[:1024],
        "type": event.type,
        "count": count,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "source": {"component": COMPONENT, "host": event.source}
        if event.source
        else {"component": COMPONENT},
        "reportingComponent": f"{COMPONENT}.io/agent",
        "reportingInstance": event.source or COMPONENT,
    }
