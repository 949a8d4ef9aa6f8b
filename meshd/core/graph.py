"""`meshd graph`: the mesh as a Graphviz DOT document, from MeshNode objects. Pure (no Graphviz here:
meshd/cli/graph.py runs `dot`). One box per node, one line per pair of nodes:

- colour and style by transport: WireGuard green solid, VXLAN orange dashed, IPIP purple dashed, no
  pod route red dotted (label "unreachable");
- a WireGuard pair whose handshake is stale or never happened is drawn bold with "handshake stale/never";
- when the two ends report different transports, the line is grey and labelled with both;
- a node's box is green when its MeshNode says Encrypted and Ready, orange when not, and dashed grey for a
  node that only its peers mention (no MeshNode of its own)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STYLE = {
    "WireGuard": ("#2e7d32", "solid"),
    "VXLAN": ("#ef6c00", "dashed"),
    "IPIP": ("#8e24aa", "dashed"),
    "None": ("#c62828", "dotted"),
}


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _conditions(status: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(c.get("type")): str(c.get("status"))
        for c in status.get("conditions") or ()
        if isinstance(c, dict)
    }


def _node_line(name: str, status: Mapping[str, Any] | None) -> str:
    if status is None:
        return f"  {quote(name)} [label={quote(name + chr(10) + '(no MeshNode)')}, style=dashed, color=grey];"
    conds, summary = _conditions(status), status.get("summary") or {}
    good = conds.get("Ready") == "True" and conds.get("Encrypted") == "True"
    key = str(status.get("publicKey") or "no WireGuard")[:8]
    label = f"{name}\n{key}\n{summary.get('encrypted', 0)}/{summary.get('peers', 0)} encrypted"
    fill = "#e8f5e9" if good else "#fff3e0"
    return f"  {quote(name)} [label={quote(label)}, fillcolor={quote(fill)}];"


def _edge_line(a: str, b: str, ends: list[Mapping[str, Any]]) -> str:
    transports = sorted({str(e.get("transport")) for e in ends})
    if len(transports) > 1:
        label = " / ".join(f"{n}: {e.get('transport')}" for n, e in zip((a, b), ends, strict=False))
        return f"  {quote(a)} -- {quote(b)} [label={quote(label)}, color=grey, style=dashed];"
    transport = transports[0]
    color, style = STYLE.get(transport, ("black", "solid"))
    label = "unreachable" if transport == "None" else transport
    handshakes = sorted({str(e["handshake"]).lower() for e in ends if e.get("handshake")})
    if handshakes:
        label += f"\nhandshake {'/'.join(handshakes)}"
        style = "bold"
    return f"  {quote(a)} -- {quote(b)} [label={quote(label)}, color={quote(color)}, fontcolor={quote(color)}, style={style}];"


def graph_dot(meshnodes: Iterable[Mapping[str, Any]]) -> str:
    """The DOT document for these MeshNode objects (file or API shape)."""
    statuses: dict[str, Mapping[str, Any]] = {}
    for obj in meshnodes:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if name:
            statuses[name] = obj.get("status") or {}
    pairs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    names = set(statuses)
    for name in sorted(statuses):
        for peer in statuses[name].get("peers") or ():
            other = str(peer.get("node") or "")
            if other and other != name:
                names.add(other)
                pairs.setdefault((min(name, other), max(name, other)), []).append(peer)
    lines = [
        "graph meshd {",
        '  graph [layout=circo, fontname="sans-serif", label="meshd mesh", labelloc=t];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fillcolor="#eeeeee"];',
        '  edge [fontname="sans-serif", fontsize=10];',
    ]
    lines += [_node_line(n, statuses.get(n)) for n in sorted(names)]
    lines += [_edge_line(a, b, ends) for (a, b), ends in sorted(pairs.items())]
    return "\n".join([*lines, "}"]) + "\n"
