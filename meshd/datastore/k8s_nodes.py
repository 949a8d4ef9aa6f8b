"""What the Kubernetes datastore keeps of a Node object, and what it reads there besides the codec's
record: whether the node runs a meshd agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshd.core.model import Node, NodeRecord

Obj = dict[str, Any]
_KEPT = {"metadata": ("name", "labels", "annotations", "resourceVersion"), "spec": ("podCIDRs", "podCIDR"),
         "status": ("addresses",)}  # fmt: skip


def slim(obj: Obj) -> Obj:
    """What the codec and `publish` read of a Node, and its Ready condition's status. The rest
    (managedFields, images, the other conditions and every timestamp: most of a real Node's bytes) is
    dropped on arrival instead of being kept for every node of the cluster. A part of the wrong type is
    kept as it is, for the codec to report."""
    kept: Obj = {}
    for part, keys in _KEPT.items():
        value = obj.get(part)
        if isinstance(value, Mapping):
            kept[part] = {k: value[k] for k in keys if k in value}
        elif part in obj:
            kept[part] = value
    ready = _ready(obj)
    if ready is not None and isinstance(kept.get("status"), dict):
        kept["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return kept


def _ready(obj: Mapping[str, Any]) -> str | None:
    """The status of the Node's Ready condition ("True", "False", "Unknown"), or None when it has none."""
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("status"))
    return None


def running_agent(obj: Mapping[str, Any], record: NodeRecord) -> bool:
    """A Node whose meshd agent published its record (the transports it has: every agent publishes them)
    and that Kubernetes does not report down (its Ready condition is not False or Unknown; a Node with no
    such condition counts). Not a node a DaemonSet's node selector leaves out, nor one whose kubelet
    stopped: no agent can be running there."""
    return isinstance(record, Node) and bool(record.capabilities) and _ready(obj) in ("True", None)
