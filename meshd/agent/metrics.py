"""Prometheus metrics documented in the README, on one registry passed in (no globals)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meshd.core.model import InvalidNode, Transport
from meshd.core.state import DesiredState, ObservedPeer


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.peers = Gauge("meshd_peers", "Peer nodes by transport in use", ["transport"], registry=registry)
        self.last_handshake = Gauge(
            "meshd_peer_last_handshake_seconds",
            "Unix time of the last WireGuard handshake with the peer (0 = never)",
            ["peer"],
            registry=registry,
        )
        self.rx = Gauge(
            "meshd_peer_receive_bytes_total",
            "Bytes received from the peer over WireGuard",
            ["peer"],
            registry=registry,
        )
        self.tx = Gauge(
            "meshd_peer_transmit_bytes_total",
            "Bytes sent to the peer over WireGuard",
            ["peer"],
            registry=registry,
        )
        self.reconciles = Counter("meshd_reconciles", "Reconcile passes run", registry=registry)
        self.errors = Counter(
            "meshd_reconcile_errors", "Reconcile passes that failed, by phase", ["phase"], registry=registry
        )
        self.duration = Histogram(
            "meshd_reconcile_duration_seconds",
            "Time one reconcile pass took",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.invalid = Gauge(
            "meshd_invalid_peers",
            "Node records that cannot be used as peers, by reason",
            ["reason"],
            registry=registry,
        )
        self.drift = Counter(
            "meshd_drift_repairs",
            "Kernel objects changed to match the desired state, by kind",
            ["kind"],
            registry=registry,
        )
        self.datastore_errors = Counter(
            "meshd_datastore_errors",
            "Failed datastore (Kubernetes API) requests, by kind: connection, throttled, server, expired, "
            "conflict, forbidden, not-found, client",
            ["kind"],
            registry=registry,
        )
        self.encryption = Gauge(
            "meshd_encryption_enabled", "1 when the MeshConfig mode is Enabled or Required", registry=registry
        )
        self.unencrypted_blocked = Gauge(
            "meshd_required_unreachable_peers",
            "Peers that get no pod route because encryption is Required and the pair cannot be encrypted",
            registry=registry,
        )
        self.required_guards, self.required_violations = _required_gauges(registry)

    def count_datastore_error(self, kind: str) -> None:
        self.datastore_errors.labels(kind=kind).inc()

    def observe_plan(self, desired: DesiredState, records: Iterable[object], *, encryption: bool) -> None:
        counts = dict.fromkeys(Transport, 0)
        for pair in desired.pairs:
            counts[pair.transport] += 1
        for transport, n in counts.items():
            self.peers.labels(transport=transport.value).set(n)
        self.unencrypted_blocked.set(counts[Transport.NONE])
        reasons: dict[str, int] = {}
        for rec in records:
            if isinstance(rec, InvalidNode):
                reasons[rec.reason] = reasons.get(rec.reason, 0) + 1
        self.invalid.clear()
        for reason, n in reasons.items():
            self.invalid.labels(reason=reason).set(n)
        self.encryption.set(1 if encryption else 0)

    def observe_peers(self, peers: Iterable[ObservedPeer], names: dict[str, str]) -> None:
        """Per-peer gauges, labelled by node name (or short key when unknown); stale peers are dropped."""
        for g in (self.last_handshake, self.rx, self.tx):
            g.clear()
        for p in peers:
            label = names.get(p.public_key.base64, p.public_key.short)
            self.last_handshake.labels(peer=label).set(p.last_handshake or 0)
            self.rx.labels(peer=label).set(p.rx_bytes)
            self.tx.labels(peer=label).set(p.tx_bytes)


def _required_gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    """Fail closed under Required: guards in place, and foreign routes past them (meshd.core.guard)."""
    guards = Gauge(
        "meshd_required_guards",
        "Pod CIDRs guarded by an unreachable route because encryption is Required",
        registry=registry,
    )
    violations = Gauge(
        "meshd_required_violations",
        "Routes that are not meshd's and may send a Required pod CIDR's traffic in clear",
        registry=registry,
    )
    return guards, violations
