"""What post-quantum tests compare on a lab mesh: each pair's PSK at both ends (never shown, only compared),
and the status objects the agents write to the file datastore (MeshNodes, Events)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from meshd.demo.netlab import Lab, LabNode
from tests.support.observe import wg_show

NONE = "(none)"


def psks(lab: Lab, node: LabNode) -> dict[str, str]:
    """Peer public key -> its PSK as `wg show IF preshared-keys` prints it (never shown, only compared)."""
    lines = wg_show(lab, node, "preshared-keys").splitlines()
    return dict(line.split("\t") for line in lines if "\t" in line)


def pair_psks(lab: Lab, nodes: list[LabNode]) -> dict[tuple[str, str], tuple[str, str]]:
    """(a, b) -> (a's PSK for b, b's PSK for a), for every pair."""
    keys = {n.name: wg_show(lab, n, "public-key") for n in nodes}
    table = {n.name: psks(lab, n) for n in nodes}
    return {
        (a.name, b.name): (table[a.name].get(keys[b.name], "?"), table[b.name].get(keys[a.name], "?"))
        for a, b in itertools.combinations(nodes, 2)
    }


def all_agree(got: dict[tuple[str, str], tuple[str, str]]) -> bool:
    return all(x == y and x not in (NONE, "?") for x, y in got.values())


def events(root: Path, reason: str, node: str) -> list[dict[str, Any]]:
    """The Events with `reason` about Node `node` the agents wrote to the file datastore at `root`."""
    found = [json.loads(p.read_text()) for p in sorted((root / "events").glob("*.json"))]
    return [
        e
        for e in found
        if e["reason"] == reason and e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": node}
    ]


def meshnode_psk(root: Path, node: str) -> dict[str, str | None]:
    """Peer -> the `psk` field of its entry in `node`'s MeshNode (None: no field)."""
    path = root / "meshnodes" / f"{node}.json"
    obj = json.loads(path.read_text()) if path.exists() else {}
    return {p["node"]: p.get("psk") for p in obj.get("status", {}).get("peers", [])}
