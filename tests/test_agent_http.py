"""The agent's HTTP endpoints as an operator and Prometheus meet them: /metrics, /healthz and /readyz on
the metrics address, /status only on the local 0600 unix socket that `meshd status` reads; per-peer
figures read from the device at scrape time, byte totals typed as counters."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from keys.values import PrivateKey
from meshd.agent.health import Health
from meshd.agent.http import serve_metrics, serve_status
from meshd.agent.metrics import Metrics, PeerCollector
from meshd.agent.settings import status_socket
from meshd.agent.view import MeshView
from meshd.cli.main import main
from meshd.core.local import Identity
from meshd.core.state import ObservedPeer, WireGuardReading

PEER = PrivateKey.generate().public_key()


@dataclass
class Device:
    """A WireGuard device whose counters move between reads, like a real one under traffic."""

    rx: int = 0
    reads: int = 0

    async def observe_device(self) -> WireGuardReading:
        self.reads += 1
        self.rx += 1000
        peer = ObservedPeer(
            PEER, None, frozenset(), last_handshake=1_800_000_000.0, rx_bytes=self.rx, tx_bytes=7
        )
        return WireGuardReading(None, 51820, (peer,))


@dataclass
class Agent:
    base: str
    run_dir: Path
    device: Device
    health: Health


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    registry, health, device = CollectorRegistry(), Health(), Device()
    Metrics(registry)
    view = MeshView(Identity(name="node-a", public_key=PrivateKey.generate().public_key()), device)
    collector = PeerCollector(view)
    registry.register(collector)
    metrics = await serve_metrics("127.0.0.1:0", registry, health, collector)
    status = await serve_status(status_socket(tmp_path), view)
    host, port = metrics.addresses[0][:2]
    try:
        yield Agent(f"http://{host}:{port}", tmp_path, device, health)
    finally:
        await metrics.cleanup()
        await status.cleanup()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()


async def test_per_peer_figures_are_read_at_scrape_time_and_typed_as_prometheus_expects(agent: Agent) -> None:
    _, first = await get(agent.base + "/metrics")
    _, second = await get(agent.base + "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(second)}
    assert families["meshd_peer_receive_bytes"].type == "counter"
    assert families["meshd_peer_transmit_bytes"].type == "counter"
    assert families["meshd_peer_last_handshake_seconds"].type == "gauge"
    (rx,) = [s for s in families["meshd_peer_receive_bytes"].samples if s.name.endswith("_total")]
    assert rx.labels == {"peer": PEER.short} and rx.value == 2000  # the second read of the device
    assert f'meshd_peer_receive_bytes_total{{peer="{PEER.short}"}} 1000.0' in first
    gauges_named_total = [
        f.name for f in families.values() if f.type == "gauge" and f.name.endswith("_total")
    ]
    assert gauges_named_total == []


async def test_health_endpoints_answer_on_the_metrics_address(agent: Agent) -> None:
    assert await get(agent.base + "/healthz") == (200, "ok\n")
    assert await get(agent.base + "/readyz") == (503, "starting\n")
    agent.health.synced = agent.health.last_pass_ok = True
    assert await get(agent.base + "/readyz") == (200, "ok\n")


async def test_status_is_not_served_on_the_metrics_address(agent: Agent) -> None:
    code, body = await get(agent.base + "/status")
    assert code == 404 and "node-a" not in body


async def test_meshd_status_reads_the_local_socket_which_only_root_may_open(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = status_socket(agent.run_dir)
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    code = await asyncio.to_thread(main, ["status", "--json", "--run-dir", str(agent.run_dir)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["node"] == "node-a"


async def test_meshd_status_without_an_agent_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--run-dir", str(tmp_path)]) == 2
    assert "is `meshd run` running?" in capsys.readouterr().err
