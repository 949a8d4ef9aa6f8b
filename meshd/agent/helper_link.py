"""The helper WireGuard link of key rotations (meshd.core.rotation): a second device with a throwaway key,
made when a rotation needs it and deleted when none has for a grace period."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from keys.values import PrivateKey, PublicKey
from meshd.agent.dataplane import describe
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.ports import Links, WireGuardDevice
from meshd.core.rotation_record import Helper
from meshd.core.state import PeerSpec, WireGuardDeviceSpec
from overlay.device import KeyedDevice
from overlay.wireguard import diff_peers

log = logging.getLogger(__name__)
MakeDevice = Callable[[str, PrivateKey], Awaitable[WireGuardDevice]]


def helper_port(listen_port: int) -> int:
    """The helper listens next to the main device: its port + 1 (- 1 for 65535)."""
    return listen_port + 1 if listen_port < 65535 else listen_port - 1


class HelperLink:
    def __init__(self, name: str, make: MakeDevice, links: Links) -> None:
        self.name = name
        self._make = make
        self._links = links
        self._key = PrivateKey.generate()  # throwaway: never written anywhere, new in every agent run
        self._device: WireGuardDevice | None = None

    def renew(self) -> None:
        """A new throwaway key (a rotation starts): the next `ensure` sets it, which ends our sessions."""
        self._key = PrivateKey.generate()
        if isinstance(self._device, KeyedDevice):
            self._device.rekey(self._key)
        else:
            self._device = None  # made again, with the new key, when next needed

    async def handshakes(self) -> dict[PublicKey, float | None]:
        """Our peers' last handshakes (unix seconds; None: never), read from the link now."""
        reading = await (await self._dev()).observe_device()
        return {p.public_key: p.last_handshake for p in reading.peers} if reading is not None else {}

    def helper(self, port: int) -> Helper:
        return Helper(self._key.public_key(), port)

    async def _dev(self) -> WireGuardDevice:
        if self._device is None:
            self._device = await self._make(self.name, self._key)
        return self._device

    async def ensure(self, *, port: int, mtu: int, peers: tuple[PeerSpec, ...], prune: bool = False) -> None:
        """The link exists with our key, `port`, `mtu` and `peers` (per-peer changes only); `prune` also
        removes other peers (only after the pass moved its routes: a route may still use one)."""
        dev = await self._dev()
        reading = await dev.observe_device()
        spec = WireGuardDeviceSpec(self.name, self._key.public_key(), port, mtu)
        if reading is None:
            log.info("creating the key-rotation helper link %s (port %s)", self.name, port)
            await dev.create(spec)
            await self._links.set_mtu(self.name, mtu)
            reading = await dev.observe_device()
        elif (reading.public_key, reading.listen_port) != (spec.public_key, port):
            await dev.configure(spec)
        adds, removes = diff_peers(peers, reading.peers if reading is not None else ())
        changes = [
            c
            for c in (*adds, *(removes if prune else ()))
            if isinstance(c, AddPeer | UpdatePeer | RemovePeer)
        ]
        if changes:
            log.info("helper %s: %s", self.name, ", ".join(describe(c) for c in changes))
            await dev.apply_peers(changes)

    async def remove(self) -> bool:
        """Delete the link if it exists. True when there was one."""
        dev = await self._dev()
        if await dev.observe_device() is None:
            return False
        log.info("deleting the key-rotation helper link %s (no rotation needs it)", self.name)
        await dev.delete()
        return True


@dataclass
class RecentPeers:
    """The helper link's peers and when each was last needed."""

    _recent: dict[PublicKey, tuple[PeerSpec, float]] = field(default_factory=dict)

    def keep(self, peers: tuple[PeerSpec, ...], now: float, grace: float) -> tuple[PeerSpec, ...]:
        """`peers` and those needed within `grace` seconds: a peer removed and re-added between two phases
        (hosting a peer's rotation, then our own) loses its session, and the packets its other end still
        sends on it. Of entries whose addresses overlap only the newest stays (two would take the addresses
        from each other on every pass); one whose addresses another took is gone for good (added again, it
        would have no session)."""
        for p in peers:
            self._recent[p.public_key] = (p, now)
        planned = {p.public_key for p in peers}
        taken = {a for p in peers for a in p.allowed_ips}
        kept: dict[PublicKey, tuple[PeerSpec, float]] = {}
        for key, (spec, used) in sorted(self._recent.items(), key=lambda kv: -kv[1][1]):  # newest first
            if key in planned or (now - used < grace and not spec.allowed_ips & taken):
                kept[key] = (spec, used)
                taken |= spec.allowed_ips
        self._recent = kept
        return peers + tuple(spec for key, (spec, _) in kept.items() if key not in planned)
