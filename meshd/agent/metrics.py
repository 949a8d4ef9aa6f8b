"""Prometheus metrics documented in the README, on one registry passed in (no globals).

`Metrics` holds what the loop counts and sets; `PeerCollector` reads per-peer figures from the WireGuard
device at scrape time (as Calico Felix does), on the agent's loop, before the registry is rendered."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshd.agent.plan_figures import PlanFigures
from meshd.agent.view import MeshView
from meshd.core.model import NodeRecord, Transport
from meshd.core.moves import Moves
from meshd.core.state import DesiredState, ObservedPeer


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._encrypted: dict[str, int] = {}  # meshd_peer_encrypted as last set
        self._figures = PlanFigures()  # what the last plan gave the metrics
        self.peers = Gauge("meshd_peers", "Peer nodes by transport in use", ["transport"], registry=registry)
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
        self.config_rejected = Gauge(
            "meshd_meshconfig_rejected",
            "1 while the latest MeshConfig is rejected and the previous one stays in force",
            registry=registry,
        )
        self.unencrypted_blocked = Gauge(
            "meshd_required_unreachable_peers",
            "Peers that get no pod route because encryption is Required and the pair cannot be encrypted",
            registry=registry,
        )
        self.required_guards, self.required_violations = _required_gauges(registry)
        self.encrypted = Gauge(
            "meshd_peer_encrypted",
            "1 when pod traffic to the peer node goes over WireGuard, 0 when it does not (fallback or no route)",
            ["peer"],
            registry=registry,
        )

    def _set_encrypted(self, touched: set[str] | None) -> None:
        """`meshd_peer_encrypted{peer}`: only the peers whose value may have changed are looked at (None:
        any); thousands of label lookups per pass would cost more than the pass."""
        values, shown = self._figures.encrypted, self._encrypted
        for peer in shown.keys() | values.keys() if touched is None else touched:
            value = values.get(peer)
            if value is None:
                if shown.pop(peer, None) is not None:
                    self.encrypted.remove(peer)
            elif shown.get(peer) != value:
                self.encrypted.labels(peer=peer).set(value)
                shown[peer] = value

    def count_datastore_error(self, kind: str) -> None:
        self.datastore_errors.labels(kind=kind).inc()

    def observe_plan(
        self, desired: DesiredState, records: tuple[NodeRecord, ...], moves: Moves, *, encryption: bool
    ) -> None:
        """Set the figures of this plan, following them from the last one (meshd.agent.plan_figures;
        `moves`: the agent's)."""
        figures = self._figures
        touched = figures.follow(desired.pairs, records, moves)
        for transport in Transport:
            self.peers.labels(transport=transport.value).set(figures.transports[transport])
        self.unencrypted_blocked.set(figures.transports[Transport.NONE])
        self._set_encrypted(touched)
        self.invalid.clear()
        for reason, n in figures.invalid.items():
            if n > 0:
                self.invalid.labels(reason=reason).set(n)
        self.encryption.set(1 if encryption else 0)


class PeerCollector(Collector):
    """`meshd_peer_*{peer}`: labelled by node name (or short key when unknown); gone peers disappear."""

    def __init__(self, view: MeshView) -> None:
        self._view = view
        self._peers: tuple[ObservedPeer, ...] | None = None

    async def refresh(self) -> None:
        """Read the device now (the /metrics handler awaits this, then renders the registry)."""
        self._peers = await self._view.live_peers()

    def collect(self) -> Iterator[Metric]:
        handshake = GaugeMetricFamily(
            "meshd_peer_last_handshake_seconds",
            "Unix time of the last WireGuard handshake with the peer (0 = never)",
            labels=["peer"],
        )
        rx = CounterMetricFamily(
            "meshd_peer_receive_bytes", "Bytes received from the peer over WireGuard", labels=["peer"]
        )
        tx = CounterMetricFamily(
            "meshd_peer_transmit_bytes", "Bytes sent to the peer over WireGuard", labels=["peer"]
        )
        names = self._view.peer_names()
        for p in self._peers if self._peers is not None else self._view.observed_peers():
            label = [names.get(p.public_key) or p.public_key.short]
            handshake.add_metric(label, p.last_handshake or 0)
            rx.add_metric(label, p.rx_bytes)
            tx.add_metric(label, p.tx_bytes)
        yield from (handshake, rx, tx)


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
