"""Per-pair transport decisions: WireGuard, the fallback, or nothing, and a short human reason. Pure.

Every input to a decision is symmetric in the two nodes (capabilities, published values, the selector
over both label sets, cluster-wide conflicts), so both ends of a pair reach the same transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.core.conflicts import ClusterView
from meshd.core.model import EncryptionMode, Fallback, LocalNode, MeshConfig, Node, Transport
from meshd.core.state import PairDecision


@dataclass(frozen=True, slots=True)
class PairPlan:
    """The decision for one remote node, plus what is possible, for standby paths."""

    peer: Node
    transport: Transport
    reason: str
    wireguard_ok: bool  # a WireGuard peer is configured (standby when not in use)
    vxlan_ok: bool  # VXLAN entries could be installed (standby in Enabled and Disabled modes)
    excluded: bool = False  # left out of the mesh by a conflict: nothing at all for this pair
    problem: str | None = None  # Problem kind when the pair gets no pod route for a non-conflict reason

    @property
    def decision(self) -> PairDecision:
        return PairDecision(self.peer.name, self.transport, self.reason, self.peer.pod_cidrs)


def decide_pair(local: LocalNode, peer: Node, *, config: MeshConfig, view: ClusterView) -> PairPlan:
    """How traffic from `local` to `peer` travels, and why."""
    conflict = view.pair_excluded(local.node.name, peer.name)
    if conflict is not None:
        return PairPlan(peer, Transport.NONE, conflict, wireguard_ok=False, vxlan_ok=False, excluded=True)
    no_wg = wireguard_blocker(local, peer, view)
    no_fallback = fallback_blocker(local, peer, config=config, view=view)
    vxlan_ok = config.fallback is Fallback.VXLAN and no_fallback is None
    selected = config.node_selector.matches(local.node.labels) and config.node_selector.matches(peer.labels)
    fallback = config.fallback.transport

    def plan(transport: Transport, reason: str, problem: str | None = None) -> PairPlan:
        ok = no_wg is None
        return PairPlan(peer, transport, reason, wireguard_ok=ok, vxlan_ok=vxlan_ok, problem=problem)

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


def wireguard_blocker(local: LocalNode, peer: Node, view: ClusterView) -> str | None:
    """Why the pair cannot use WireGuard, or None when it can."""
    me = local.node
    checks = (
        (not local.wireguard_available, "this node has no WireGuard backend"),
        (me.public_key is None, "this node has no WireGuard key"),
        (me.endpoint is None, "this node publishes no WireGuard endpoint"),
        (Transport.WIREGUARD not in me.capabilities, "this node does not advertise WireGuard"),
        (Transport.WIREGUARD not in peer.capabilities, f"{peer.name} does not run WireGuard"),
        (peer.public_key is None, f"{peer.name} publishes no WireGuard key"),
        (peer.endpoint is None, f"{peer.name} publishes no WireGuard endpoint"),
        (me.name in view.key_copiers, "this node publishes a public key that another node proves it holds"),
        (
            peer.name in view.key_copiers,
            f"{peer.name} publishes a public key that another node proves it holds",
        ),
        (me.public_key in view.duplicate_keys, "this node's public key is also published by another node"),
        (
            peer.public_key in view.duplicate_keys,
            f"{peer.name}'s public key is also published by another node",
        ),
    )
    return next((why for blocked, why in checks if blocked), None)


def fallback_blocker(local: LocalNode, peer: Node, *, config: MeshConfig, view: ClusterView) -> str | None:
    """Why the pair cannot use the configured fallback, or None when it can."""
    me = local.node
    checks: tuple[tuple[bool, str], ...]
    if config.fallback is Fallback.VXLAN:
        checks = (
            (Transport.VXLAN not in me.capabilities, "this node cannot run VXLAN"),
            (Transport.VXLAN not in peer.capabilities, f"{peer.name} cannot run VXLAN"),
            (peer.vxlan_mac is None, f"{peer.name} publishes no VXLAN MAC"),
            (_dup_mac(local.node, view), "this node's VXLAN MAC is also published by another node"),
            (_dup_mac(peer, view), f"{peer.name}'s VXLAN MAC is also published by another node"),
        )
    elif config.fallback is Fallback.IPIP:
        checks = (
            (not local.ipip_available, "this node has no IPIP support"),
            (Transport.IPIP not in me.capabilities, "this node does not advertise IPIP"),
            (Transport.IPIP not in peer.capabilities, f"{peer.name} cannot run IPIP"),
            (me.underlay_ip.version != 4, "IPIP needs an IPv4 underlay and this node's is IPv6"),
            (peer.underlay_ip.version != 4, f"IPIP needs an IPv4 underlay and {peer.name}'s is IPv6"),
        )
    else:
        checks = ((True, "the fallback is None"),)
    return next((why for blocked, why in checks if blocked), None)


def _dup_mac(node: Node, view: ClusterView) -> bool:
    return node.vxlan_mac is not None and node.vxlan_mac.lower() in view.duplicate_macs
