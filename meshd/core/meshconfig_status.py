"""The MeshConfig status, summed from the MeshNodes by the one agent holding the lease. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshd.core.meshnode import with_transitions


def _condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == kind and c.get("status") == "True" for c in conds if isinstance(c, dict))


def meshconfig_status(
    generation: int,
    meshnodes: Iterable[Mapping[str, Any]],
    *,
    rejected: str | None,
    now: float,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`generation`: the MeshConfig's current one; `rejected`: why the agents refuse it (None: accepted).
    A node counts as applied when its MeshNode reports `observedGeneration` == `generation`; as ready or
    encrypted when it has applied it and its condition says so."""
    nodes = list(meshnodes)
    applied = [n for n in nodes if (n.get("status") or {}).get("observedGeneration") == generation]
    counts = {
        "total": len(nodes),
        "applied": len(applied),
        "ready": sum(1 for n in applied if _condition_true(n, "Ready")),
        "encrypted": sum(1 for n in applied if _condition_true(n, "Encrypted")),
    }
    if rejected is None:
        accepted = {
            "type": "Accepted",
            "status": "True",
            "reason": "Valid",
            "message": "the agents apply this spec",
        }
    else:
        accepted = {"type": "Accepted", "status": "False", "reason": "Rejected", "message": rejected[:1024]}
    done = counts["applied"] == counts["total"] and rejected is None
    applied_cond = {
        "type": "Applied",
        "status": "True" if done else "False",
        "reason": "AllNodesApplied" if done else "Pending",
        "message": f"{counts['applied']} of {counts['total']} nodes applied generation {generation}",
    }
    conds = with_transitions([accepted, applied_cond], (previous or {}).get("conditions") or (), now=now)
    return {
        "observedGeneration": generation,
        "nodes": counts,
        "conditions": [{**c, "observedGeneration": generation} for c in conds],
    }
