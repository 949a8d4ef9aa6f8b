"""An asyncio event loop on a virtual clock, for tests of what a loop does over hours without waiting them:
whenever nothing is ready, the clock jumps to the next timer. `wakeups` counts the times a real loop would
have gone to sleep and woken on a timer, which is what an idle agent's CPU is made of."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        self.wakeups = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the loop would sleep forever: nothing is scheduled")
        self._loop.now += timeout
        self._loop.wakeups += 1
        return ready


def run_virtual(main: Coroutine[Any, Any, T]) -> tuple[T, VirtualLoop]:
    """Run `main` on a fresh VirtualLoop; returns its result and the loop (for `now` and `wakeups`)."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main), loop
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left))
        loop.close()


def virtual_loop() -> VirtualLoop:
    """The running VirtualLoop (inside `run_virtual`)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualLoop)
    return loop
