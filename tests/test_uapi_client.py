"""UapiClient's bounds, against a socket server that plays a slow wireguard-go (no process needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshd.errors import TransientError
from overlay import userspace
from overlay.userspace import UapiClient


async def test_a_large_set_gets_more_time_than_a_small_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wireguard-go that answers after a second: too late for a small request (timeout 0.2 s), in time
    for a set of a megabyte, which is allowed SLOWEST_SET bytes a second on top (here 10 s more)."""
    monkeypatch.setattr(userspace, "SLOWEST_SET", 100_000)

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        await asyncio.sleep(1.0)
        writer.write(b"errno=0\n\n")
        await writer.drain()

    server = await asyncio.start_unix_server(slow, str(tmp_path / "slow0.sock"), limit=1 << 21)
    try:
        client = UapiClient(tmp_path / "slow0.sock", timeout=0.2)
        with pytest.raises(TransientError, match="no reply"):
            await client.set("set=1\nlisten_port=1\n\n", "setting a port")
        await client.set("set=1\n" + "listen_port=1\n" * 70_000 + "\n", "setting a port 70000 times")
    finally:
        server.close()
