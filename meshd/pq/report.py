"""What the PSK layer shows: the `postQuantum` part of /status, its lines in `meshd status`, and its
metrics, read at scrape time. Fingerprints, epochs, ages and states only: never a key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshd.core.duration import format_duration
from meshd.pq.manager import PskManager
from meshd.pq.state import PairState, active_until

ACTIVE, STALE, PENDING, OFF = "active", "stale", "pending", "off"
STATES = (ACTIVE, STALE, PENDING, OFF)


def pair_state(st: PairState, *, now: float, interval: float) -> str:
    """active: a PSK younger than two intervals (and a retry margin); stale: older (exchanges failing);
    pending: none exchanged yet in this agent's life."""
    if st.since is None:
        return PENDING
    return ACTIVE if now < active_until(st.since, interval) else STALE


def pair_states(manager: PskManager) -> dict[str, str]:
    """Peer -> its PSK state, for the MeshNode (states only: they change seldom, so writes stay rare);
    empty while `postQuantum` is Disabled."""
    plan, now = manager.plan, manager.clock()
    if not plan.enabled:
        return {}
    states = {n: pair_state(st, now=now, interval=plan.interval) for n, st in manager.states.items()}
    return states | {name: OFF for name, _ in plan.off}


def status(manager: PskManager) -> dict[str, Any]:
    plan, now = manager.plan, manager.clock()
    peers: list[dict[str, Any]] = []
    for name, st in sorted(manager.states.items()):
        peers.append(
            {
                "node": name,
                "state": pair_state(st, now=now, interval=plan.interval),
                "role": "initiator" if st.pair.initiator else "responder",
                "epoch": st.epoch,
                "fingerprint": st.fingerprint,
                "ageSeconds": None if st.since is None else round(now - st.since, 1),
                "lastError": st.error,
            }
        )
    peers += [{"node": name, "state": OFF, "reason": reason} for name, reason in plan.off]
    return {
        "enabled": plan.enabled,
        "pskRotationInterval": format_duration(plan.interval),
        "exchanges": manager.exchanges,
        "exchangeErrors": dict(sorted(manager.errors.items())),
        "peers": sorted(peers, key=lambda p: str(p["node"])),
    }


def render(doc: Mapping[str, Any]) -> str:
    """The lines `meshd status` prints under the peer table."""
    pq = doc.get("postQuantum")
    if not isinstance(pq, Mapping):
        return ""
    head = "enabled" if pq.get("enabled") else "disabled"
    lines = [f"post-quantum PSKs: {head}, rotation every {pq.get('pskRotationInterval')}"]
    for p in pq.get("peers", []):
        if p.get("state") == OFF:
            lines.append(f"  {p['node']}: no PSK ({p.get('reason')})")
            continue
        age = p.get("ageSeconds")
        shown = (
            f"epoch {p.get('epoch')}, fingerprint {p.get('fingerprint')}, age {age}s"
            if age is not None
            else "none yet"
        )
        error = f"; last error: {p['lastError']}" if p.get("lastError") else ""
        lines.append(f"  {p['node']}: {p.get('state')} ({shown}){error}")
    return "\n".join(lines)


class PskCollector(Collector):
    """meshd_peer_psk{peer,state}, meshd_psk_exchanges_total, meshd_psk_exchange_errors_total{reason}."""

    def __init__(self, manager: PskManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        manager = self.manager
        gauge = GaugeMetricFamily(
            "meshd_peer_psk",
            "1 for the PSK state of each WireGuard peer (active, stale, pending, off)",
            labels=["peer", "state"],
        )
        # Only while post-quantum PSKs are enabled: disabled, every pair is `off` (thousands of series)
        for p in status(manager)["peers"] if manager.plan.enabled else ():
            for state in STATES:
                gauge.add_metric([p["node"], state], 1.0 if p["state"] == state else 0.0)
        yield gauge
        yield CounterMetricFamily(
            "meshd_psk_exchanges", "Completed PSK exchanges (both roles)", value=manager.exchanges
        )
        errors = CounterMetricFamily(
            "meshd_psk_exchange_errors", "Failed PSK exchanges by reason", labels=["reason"]
        )
        for reason, n in sorted(manager.errors.items()):
            errors.add_metric([reason], n)
        yield errors
