"""What the PSK manager (meshd.pq.manager) works with: the WireGuard device it sets preshared keys on, and
what it keeps per pair."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from keys.values import PublicKey
from meshd.core.state import WireGuardReading
from meshd.pq.pairs import PqPair


@runtime_checkable
class PskDevice(Protocol):
    name: str

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None: ...

    async def observe_device(self) -> WireGuardReading | None: ...


@dataclass
class PairState:
    pair: PqPair
    epoch: int = 0
    fingerprint: str | None = None
    since: float | None = None  # monotonic time the current PSK was installed
    next_try: float = 0.0
    failures: int = 0
    error: str | None = None
    task: asyncio.Task[None] | None = None


def active_until(since: float, interval: float) -> float:
    """When a PSK installed at `since` turns stale unless a new one replaced it: two rotation intervals and a
    retry margin later."""
    return since + 2 * interval + 30
