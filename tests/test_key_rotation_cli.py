"""`meshd keys rotate`: POST /rotate on the agent's local 0600 socket (never on the metrics address); the
CLI prints the new public key, or says why not with exit code 2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keys.values import PrivateKey
from meshd.agent.http import Rotate, serve_status
from meshd.agent.settings import status_socket
from meshd.agent.view import MeshView
from meshd.cli.main import main
from meshd.core.local import Identity

NEW = PrivateKey.generate().public_key().base64


async def rotated(_within: float) -> str:
    return NEW


async def too_slow(_within: float) -> str:
    raise TimeoutError


async def _serve(tmp_path: Path, rotate: Rotate | None) -> AsyncIterator[Path]:
    view = MeshView(Identity(name="node-a", public_key=PrivateKey.generate().public_key()))
    runner = await serve_status(status_socket(tmp_path), view, rotate)
    try:
        yield tmp_path
    finally:
        await runner.cleanup()


@pytest.fixture(params=["done", "timeout", "no-wireguard"])
async def agent(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    rotate = {"done": rotated, "timeout": too_slow, "no-wireguard": None}[request.param]
    async for run_dir in _serve(tmp_path, rotate):
        yield request.param, run_dir


async def test_keys_rotate(agent: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    case, run_dir = agent
    code = await asyncio.to_thread(main, ["keys", "rotate", "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    if case == "done":
        assert (code, out.strip()) == (0, NEW)
    elif case == "timeout":
        assert code == 2 and "504" in err and "did not finish" in err
    else:
        assert code == 2 and "409" in err and "no WireGuard key" in err


def test_keys_rotate_without_an_agent_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "rotate", "--run-dir", str(tmp_path)]) == 2
    assert "is `meshd run` running?" in capsys.readouterr().err
