"""Helpers shared by the agent scenario tests (fake and real API server): wait for a mesh, scrape an
agent's /metrics, print a measured number past pytest's capture."""

from __future__ import annotations

import time

import pytest

from meshd.demo.agents import Agent, Mesh


def converge(mesh: Mesh, transport: str = "wireguard", *, timeout: float = 90) -> float:
    """Seconds until every agent has every other node over `transport` and all pods ping each other."""
    t0 = time.monotonic()
    ok = mesh.wait_for(transport, timeout=timeout)
    assert ok, f"no {transport} mesh:\n" + "\n".join(a.log_tail(8) for a in mesh.agents)
    return time.monotonic() - t0


def scrape(mesh: Mesh, agent: Agent) -> str:
    code, text = agent.http_get(mesh.lab, "/metrics")
    assert code == 200, f"/metrics of {agent.node.name}: {code}"
    return text


def say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")
