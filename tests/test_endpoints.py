"""When the agent's endpoints start: once the first pass published our record (the after-publish hook) and
the passes after it paused, or START_WITHIN seconds after start when no publish comes or passes keep going;
a port that cannot be listened on fails the task with a clear error. On loopback, as an agent's /metrics
would be."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

import meshd.agent.endpoints as endpoints_module
from keys.values import PrivateKey
from meshd.agent.endpoints import Endpoints
from meshd.agent.health import Health
from meshd.agent.metrics import PeerCollector
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.model import LocalNode, Node
from meshd.core.state import DesiredState
from meshd.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _endpoints(tmp_path: Path, port: int) -> Endpoints:
    view = MeshView(Identity(name="node-a", public_key=PrivateKey.generate().public_key()))
    return Endpoints(
        f"127.0.0.1:{port}",
        CollectorRegistry(),
        Health(),
        PeerCollector(view),
        tmp_path / "status.sock",
        view,
    )


async def _publish(ep: Endpoints) -> None:
    """What the agent's first pass does once it published our record."""
    await ep.published_hook()(
        LocalNode(Node("node-a", ipaddress.ip_address("198.18.0.1"), ())), DesiredState()
    )


async def _healthz(port: int) -> int | None:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return None


async def test_endpoints_start_once_our_record_is_published(tmp_path: Path) -> None:
    port = _free_port()
    ep = _endpoints(tmp_path, port)
    task = ep.start()
    try:
        await asyncio.sleep(0.3)
        assert await _healthz(port) is None and not (tmp_path / "status.sock").exists()
        me = LocalNode(Node("node-a", ipaddress.ip_address("198.18.0.1"), ()))
        await ep.published_hook()(me, DesiredState())
        await asyncio.wait_for(task, 10)
        assert await _healthz(port) == 200 and (tmp_path / "status.sock").exists()
    finally:
        await ep.close()
    assert await _healthz(port) is None


async def test_endpoints_wait_for_the_passes_after_our_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published during a pass that keeps running (a forming mesh's nodes being added): not yet; once it
    ended and QUIET passed without another, they serve."""
    monkeypatch.setattr(endpoints_module, "START_WITHIN", 600.0)  # only the passes decide here
    port = _free_port()
    ep = _endpoints(tmp_path, port)
    ep.view.passing = True
    task = ep.start()
    try:
        await _publish(ep)
        await asyncio.sleep(3 * endpoints_module.QUIET)
        assert not task.done() and await _healthz(port) is None
        ep.view.pass_ended()
        await asyncio.wait_for(task, 10)
        assert await _healthz(port) == 200
    finally:
        await ep.close()


async def test_endpoints_start_within_a_bound_while_passes_keep_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(endpoints_module, "START_WITHIN", 0.5)
    port = _free_port()
    ep = _endpoints(tmp_path, port)
    ep.view.passing = True
    task = ep.start()
    try:
        await _publish(ep)
        with caplog.at_level("INFO"):
            await asyncio.wait_for(task, 10)
        assert await _healthz(port) == 200 and "passes still running" in caplog.text
    finally:
        await ep.close()


async def test_endpoints_start_within_a_bound_without_a_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints_module, "START_WITHIN", 0.2)
    port = _free_port()
    ep = _endpoints(tmp_path, port)
    try:
        await asyncio.wait_for(ep.start(), 10)
        assert await _healthz(port) == 200
    finally:
        await ep.close()


async def test_a_port_in_use_fails_the_task_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints_module, "START_WITHIN", 0.0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ep = _endpoints(tmp_path, int(taken.getsockname()[1]))
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:"):
            await asyncio.wait_for(ep.start(), 10)
        await ep.close()


PROBE = """
import asyncio, ipaddress, sys, tempfile
from pathlib import Path
from tests.test_endpoints import _endpoints, _free_port
from meshd.core.model import LocalNode, Node
from meshd.core.state import DesiredState

def importing() -> bool:
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False) for m in list(sys.modules.values()))

async def main() -> None:
    assert "aiohttp.web" not in sys.modules
    ran = 0
    async def ticker() -> None:
        nonlocal ran
        while True:
            ran += importing()
            await asyncio.sleep(0.001)
    ep = _endpoints(Path(tempfile.mkdtemp()), _free_port())
    tick = asyncio.create_task(ticker())
    task = ep.start()
    await ep.published_hook()(LocalNode(Node("node-a", ipaddress.ip_address("198.18.0.1"), ())), DesiredState())
    await asyncio.wait_for(task, 30)
    tick.cancel()
    await ep.close()
    print(ran)

asyncio.run(main())
"""


def test_the_loop_runs_while_the_web_server_is_imported() -> None:
    """In a fresh interpreter (aiohttp not imported yet): other tasks on the agent's loop ran while
    aiohttp's web server was being imported (the loop programs joining peers meanwhile)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 0
