"""The local mesh view served on /status and printed by `meshd status`. Pure formatting, no I/O."""

from __future__ import annotations

from typing import Any

from meshd.core.guard import guard_violations
from meshd.core.local import Identity
from meshd.core.model import MeshConfig
from meshd.core.state import ActualState, DesiredState, ObservedPeer


def status_document(
    identity: Identity,
    last: tuple[DesiredState, ActualState] | None,
    config: MeshConfig,
    *,
    live: tuple[ObservedPeer, ...] | None = None,
) -> dict[str, Any]:
    """`live`: peers read from the device just now; without it, what the last pass observed."""
    doc: dict[str, Any] = {
        "node": identity.name,
        "publicKey": identity.public_key.base64 if identity.public_key else None,
        "mode": config.mode.value,
        "fallback": config.fallback.value,
        "generation": config.generation,
        "interface": None,
        "peers": [],
        "problems": [],
    }
    if last is None:
        return doc
    desired, actual = last
    if desired.wireguard:
        doc["interface"] = desired.wireguard.name
        doc["listenPort"] = desired.wireguard.listen_port
    peers = live if live is not None else (actual.wireguard.peers if actual.wireguard else ())
    observed = {p.public_key: p for p in peers}
    specs = {p.node: p for p in desired.peers}
    for pair in desired.pairs:
        spec = specs.get(pair.node)
        seen: ObservedPeer | None = observed.get(spec.public_key) if spec else None
        doc["peers"].append(
            {
                "node": pair.node,
                "transport": pair.transport.value,
                "reason": pair.reason,
                "publicKey": spec.public_key.base64 if spec else None,
                "endpoint": str(seen.endpoint or spec.endpoint)
                if seen and spec
                else (str(spec.endpoint) if spec else None),
                "allowedIPs": sorted(map(str, spec.allowed_ips)) if spec else [],
                "podCIDRs": [str(c) for c in pair.pod_cidrs],
                "lastHandshake": seen.last_handshake if seen else None,
                "rxBytes": seen.rx_bytes if seen else 0,
                "txBytes": seen.tx_bytes if seen else 0,
            }
        )
    problems = (*desired.problems, *guard_violations(desired.guards, actual.foreign_routes))
    doc["problems"] = [{"kind": p.kind, "nodes": list(p.nodes), "detail": p.detail} for p in problems]
    doc["guards"] = sorted(map(str, desired.guards))
    return doc


def _age(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    secs = max(0, int(now - ts))
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}m ago"


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _routed(peer: dict[str, Any]) -> str:
    """What reaches this peer: its pod CIDRs over any transport (WireGuard's allowed IPs are the same)."""
    if peer["transport"] == "none":
        return "- (no route)"
    return ",".join(peer.get("podCIDRs") or peer.get("allowedIPs") or []) or "-"


def render_table(doc: dict[str, Any], *, now: float) -> str:
    """A readable table of the /status document; `now` is passed in (no clock here)."""
    head = (
        f"node {doc['node']}  interface {doc.get('interface') or '-'}  port {doc.get('listenPort', '-')}  "
        f"mode {doc['mode']}  fallback {doc['fallback']}\npublic key {doc.get('publicKey') or '- (no WireGuard)'}"
    )
    cols = ("PEER", "TRANSPORT", "ENDPOINT", "ALLOWED IPS", "HANDSHAKE", "RX", "TX")
    rows = [
        (
            p["node"],
            p["transport"],
            (p.get("endpoint") or "-") if p["transport"] == "wireguard" else "-",
            _routed(p),
            _age(p.get("lastHandshake"), now) if p["transport"] == "wireguard" else "-",
            _bytes(p.get("rxBytes", 0)),
            _bytes(p.get("txBytes", 0)),
        )
        for p in doc.get("peers", [])
    ]
    widths = [max(len(str(r[i])) for r in [cols, *rows]) for i in range(len(cols))]
    lines = [head, "", "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if not rows:
        lines.append("(no peers)")
    for prob in doc.get("problems", []):
        lines.append(f"! {prob['kind']}: {prob['detail']}")
    return "\n".join(line.rstrip() for line in lines)
