"""The kernel as the last pass read it, kept for the next pass when that one found nothing to do.

A pass triggered by a datastore change right after a quiet pass reuses its view: a node joining a
1000-node mesh then costs one plan and its own few kernel writes, not a dump of every peer, route and FDB
entry. The pass after any change, the resync timer and any retry read the kernel again (`full`), so drift
is still repaired.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshd.agent.underlay import DEFAULT_MTU
from meshd.core.model import IPAddress
from meshd.core.state import ActualState


@dataclass
class KernelView:
    observe: Callable[[], Awaitable[ActualState]]
    underlay_mtu: Callable[[IPAddress], Awaitable[int]] | None = None
    """Measures the MTU of the link holding our underlay address; None: assume DEFAULT_MTU."""
    _quiet: tuple[ActualState, int] | None = None  # what the last quiet pass read
    _reusing: tuple[ActualState, int] | None = None  # what this pass reuses

    async def actual(self, *, full: bool) -> ActualState:
        """Starts a pass: the quiet view when allowed and there is one, else a fresh read."""
        self._reusing, self._quiet = (None if full else self._quiet), None
        return self._reusing[0] if self._reusing is not None else await self.observe()

    async def mtu(self, address: IPAddress) -> int:
        if self._reusing is not None:
            return self._reusing[1]
        return DEFAULT_MTU if self.underlay_mtu is None else await self.underlay_mtu(address)

    def settle(self, actual: ActualState, mtu: int, *, quiet: bool) -> None:
        """Ends a pass: keep its view only when it changed nothing."""
        self._quiet = (actual, mtu) if quiet else None
