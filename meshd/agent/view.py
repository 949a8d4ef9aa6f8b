"""What the last pass saw and planned, kept for readers on the agent's loop: `/status` and the per-peer
metrics. Their peer figures are read from the WireGuard device when asked, on the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from keys.values import PublicKey
from meshd.core.local import Identity
from meshd.core.model import MeshConfig, Snapshot
from meshd.core.state import ActualState, DesiredState, ObservedPeer, WireGuardReading
from meshd.core.status import status_document

log = logging.getLogger(__name__)


class DeviceReader(Protocol):
    async def observe_device(self) -> WireGuardReading | None: ...


@dataclass
class MeshView:
    identity: Identity
    wireguard: DeviceReader | None = None
    config: MeshConfig = field(default_factory=MeshConfig)
    last: tuple[DesiredState, ActualState] | None = None
    """The last complete pass: what it planned and the kernel it observed."""
    applied: Snapshot | None = None
    """The snapshot the last complete pass applied (set with `last`)."""
    found: ActualState | None = None
    """The kernel as the pass now finishing found it, before its changes (set before its after-pass hooks)."""
    passed_at: float = float("-inf")
    """When the last pass ended (the loop's clock, time.monotonic), complete or not."""
    passing: bool = False
    """A pass is running."""
    passes: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a pass ends (`pass_ended`); whoever waits for passes clears it."""
    extra: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    """More top-level parts of /status, e.g. `postQuantum` (meshd.pq)."""
    psk_states: Callable[[], Mapping[str, str]] = dict
    """Peer -> its post-quantum PSK state (meshd.pq), for the MeshNode (reading them costs every pair)."""
    psk_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a PSK state changed (meshd.pq.watch); whoever reads `psk_states` then clears it."""

    _names: tuple[object, Mapping[PublicKey, str]] | None = None

    def pass_ended(self) -> None:
        self.passed_at, self.passing = asyncio.get_running_loop().time(), False
        self.passes.set()

    def peer_names(self) -> Mapping[PublicKey, str]:
        """Public key to node name, from the last plan (made again only when the plan changes)."""
        desired = self.last[0] if self.last else None
        if self._names is None or self._names[0] is not desired:
            self._names = (desired, {p.public_key: p.node for p in desired.peers} if desired else {})
        return self._names[1]

    def observed_peers(self) -> tuple[ObservedPeer, ...]:
        """The peers as the last pass observed them."""
        wg = self.last[1].wireguard if self.last else None
        return wg.peers if wg else ()

    async def live_peers(self) -> tuple[ObservedPeer, ...] | None:
        """The peers read from the device now; None without a device or when the read fails."""
        if self.wireguard is None:
            return None
        try:
            reading = await self.wireguard.observe_device()
        except Exception as exc:  # a scrape or a status request must not fail on a busy device
            log.debug("live peer read failed: %s", exc)
            return None
        return reading.peers if reading is not None else ()

    async def status(self) -> dict[str, Any]:
        """The /status document, with peer counters read from the device now."""
        doc = status_document(self.identity, self.last, self.config, live=await self.live_peers())
        return doc | {key: part() for key, part in self.extra.items()}
