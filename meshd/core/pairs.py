"""Per-pair transport decisions: WireGuard, the fallback, or nothing, and a short human reason. Pure.

What each transport needs of a pair is that transport's `blocker` (meshd.core.registry). Every input to a
decision is symmetric in the two nodes (capabilities, published values, the selector over both label sets,
cluster-wide conflicts), so both ends of a pair reach the same transport.
"""

from __future__ import annotations

from meshd.core.conflicts import ClusterView
from meshd.core.model import EncryptionMode, Fallback, LocalNode, MeshConfig, Node, Transport
from meshd.core.registry import TRANSPORTS
from meshd.core.transport import PairPlan


def decide_pair(local: LocalNode, peer: Node, *, config: MeshConfig, view: ClusterView) -> PairPlan:
    """How traffic from `local` to `peer` travels, and why."""
    conflict = view.pair_excluded(local.node.name, peer.name)
    if conflict is not None:
        return PairPlan(peer, Transport.NONE, conflict, excluded=True)
    fallback = config.fallback.transport
    no_wg = TRANSPORTS[Transport.WIREGUARD].blocker(local, peer, view)
    no_fallback = fallback_blocker(local, peer, fallback=config.fallback, view=view)
    usable = frozenset(t for t, no in ((Transport.WIREGUARD, no_wg), (fallback, no_fallback)) if no is None)
    selected = config.node_selector.matches(local.node.labels) and config.node_selector.matches(peer.labels)

    def plan(transport: Transport, reason: str, problem: str | None = None) -> PairPlan:
        return PairPlan(peer, transport, reason, usable=usable, problem=problem)

    def via_fallback(why: str) -> PairPlan:
        if no_fallback is None:
            return plan(fallback, f"{why}; using {config.fallback.value}")
        return plan(Transport.NONE, f"{why} and {no_fallback}: no pod route", "no-transport")

    if config.mode is EncryptionMode.DISABLED:
        return via_fallback("encryption is disabled")
    if not selected:
        return via_fallback("outside the encryption nodeSelector")
    if no_wg is None:
        return plan(Transport.WIREGUARD, "encrypted with WireGuard")
    if config.mode is EncryptionMode.REQUIRED:
        return plan(
            Transport.NONE, f"encryption required but {no_wg}: no pod route", "encryption-unavailable"
        )
    return via_fallback(no_wg)


def fallback_blocker(local: LocalNode, peer: Node, *, fallback: Fallback, view: ClusterView) -> str | None:
    """Why the pair cannot use the configured fallback, or None when it can."""
    encapsulation = TRANSPORTS.get(fallback.transport)
    if encapsulation is None:
        return "the fallback is None"
    return encapsulation.blocker(local, peer, view)
