"""The kernel as a pass sees it: read in full, or kept current from the last pass.

Without kernel notifications (`events` None), a pass right after a quiet pass reuses that pass's view, and
any other pass reads the kernel again. With them (KernelEvents), the view of the last pass is carried on:
the kernel's notifications fold in what changed in routes, guards, FDB and neighbour entries (ours or
anyone's), and the WireGuard peers are what the last pass applied to them. A pass after a change then reads
nothing (`Read.KEPT`). WireGuard has no notifications, so the resync timer reads the device again and
carries the rest (`Read.PEERS`). A full read happens when asked (the first pass, every few resyncs, every
retry), when notifications were lost, or after anything else changed (a link, an address, a device).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from meshd.agent.kernel_events import KernelEvents
from meshd.agent.underlay import DEFAULT_MTU
from meshd.core import actions as a
from meshd.core.fold import fold_peers
from meshd.core.model import IPAddress
from meshd.core.moves import Moves
from meshd.core.state import ActualState, WireGuardReading

FOLDED = (
    a.AddPeer, a.UpdatePeer, a.RemovePeer, a.AddNeighbor, a.RemoveNeighbor, a.AddFdb, a.RemoveFdb,
    a.ReplaceRoute, a.RemoveRoute,
)  # fmt: skip
"""Actions whose effect the view follows (peers by folding, the rest by notifications)."""


class Read(IntEnum):
    """How much of the kernel a pass reads (a pass asked for several reads the most)."""

    KEPT = 0  # nothing: the last pass's view, kept current by the notifications
    PEERS = 1  # the WireGuard device (no notifications), the rest kept
    FULL = 2  # everything


@dataclass
class KernelView:
    observe: Callable[[], Awaitable[ActualState]]
    underlay_mtu: Callable[[IPAddress], Awaitable[int]] | None = None
    """Measures the MTU of the link holding our underlay address; None: assume DEFAULT_MTU."""
    events: KernelEvents | None = None
    device: Callable[[], Awaitable[WireGuardReading | None]] | None = None
    """Reads the WireGuard device alone (key, port, peers); None: `Read.PEERS` reads everything."""
    moves: Moves = field(kw_only=True)  # the agent's: told what the folds change
    _kept: tuple[ActualState, int] | None = None  # the view the next pass may start from
    _reusing: tuple[ActualState, int] | None = None  # what this pass reuses
    full_reads: int = 0
    peer_reads: int = 0

    async def actual(self, read: Read) -> ActualState:
        """Starts a pass: the kept view when `read` allows and there is one, else a fresh read."""
        kept, self._kept, self._reusing = self._kept, None, None
        if read is not Read.FULL and kept is not None:
            current = kept[0] if self.events is None else self.events.fold(kept[0], self.moves)
            if current is not None and read is Read.PEERS:
                current = await self._peers(current)
            if current is not None:
                self._reusing = (current, kept[1])
                return current
        return await self._read()

    async def _peers(self, current: ActualState) -> ActualState | None:
        """`current` with the WireGuard device read again; None when only a full read will do (no
        notifications, or the device went away)."""
        wg = current.wireguard
        if self.events is None or self.device is None:
            return None
        if wg is None:
            return current  # no device of ours: its creation would come as a link notification
        self.peer_reads += 1
        reading = await self.device()
        if reading is None:
            return None
        return replace(
            current,
            wireguard=replace(
                wg, public_key=reading.public_key, listen_port=reading.listen_port, peers=reading.peers
            ),
        )

    async def _read(self) -> ActualState:
        self.full_reads += 1
        if self.events is None:
            return await self.observe()
        if not self.events.started:
            await self.events.start()  # subscribe before reading, so nothing is missed in between
        self.events.reset()
        actual = await self.observe()
        self.events.observed()
        return actual

    async def mtu(self, address: IPAddress) -> int:
        if self._reusing is not None:
            return self._reusing[1]
        return DEFAULT_MTU if self.underlay_mtu is None else await self.underlay_mtu(address)

    def applying(self, actions: Sequence[a.Action]) -> None:
        """Before a pass applies `actions`: when its view will not be kept (`settle`), the notifications
        of what it writes are not decoded (the next pass reads the whole kernel)."""
        if self.events is not None and actions and not _folded(actions):
            self.events.forget()

    def settle(self, actual: ActualState, mtu: int, actions: Sequence[a.Action]) -> None:
        """Ends a pass that applied `actions`: keep its view for the next one when it still holds."""
        if not actions:
            self._kept = (actual, mtu)
        elif self.events is not None and _folded(actions):
            wg = actual.wireguard
            self._kept = (replace(actual, wireguard=fold_peers(wg, actions, self.moves) if wg else None), mtu)
        else:
            self._kept = None
        if self._kept is not None and self.events is not None:
            self.events.keep(self._kept[0])


def _folded(actions: Sequence[a.Action]) -> bool:
    return all(isinstance(x, FOLDED) for x in actions)
