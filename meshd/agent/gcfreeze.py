"""Keeps what the agent holds for the long run out of the cyclic garbage collector's scans. A full
collection walks every tracked object: at 5000 nodes about 35 ms, at moments set by allocation counts
(often in the middle of a pass, delaying the node add it is programming). After each complete pass, what
survived it is frozen (`gc.freeze`: no scan sees it again; reference counting still frees it). Cycles
among frozen objects that become garbage later would stay, so at most every `period` seconds, after a
pass, everything is unfrozen, collected once and frozen again.

`meshd run` starts with the collector off (meshd/__main__.py): the first pass's hook turns it on, after its
collection and freeze, and so does `collect_within` if no pass has completed by then (a datastore that does
not sync must not leave cyclic garbage uncollected)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

PERIOD = 600.0
COLLECT_WITHIN = 30.0
"""Seconds after the agent started by which the collector is on, whether a pass completed or not."""


def freeze_after_passes(
    period: float = PERIOD, clock: Callable[[], float] = time.monotonic
) -> Callable[..., Awaitable[None]]:
    """The after-pass hook: the first pass's collection and freeze, then a freeze after every pass and a
    full collection at most every `period` seconds."""
    collected: float | None = None

    async def freeze(*_: Any) -> None:
        nonlocal collected
        now = clock()
        if collected is None or now - collected >= period:
            collected = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        gc.enable()

    return freeze


def collect_within(seconds: float = COLLECT_WITHIN) -> asyncio.TimerHandle:
    """Turn the collector on after `seconds` at the latest (the first pass's hook usually does first)."""
    return asyncio.get_running_loop().call_later(seconds, gc.enable)
