"""Reading a WireGuard backend the way the dataplane does: one `observe_device` call."""

from __future__ import annotations

from keys.values import PublicKey
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.ports import WireGuardDevice
from meshd.core.state import ObservedPeer, PeerSpec


async def peers_of(device: WireGuardDevice) -> tuple[ObservedPeer, ...]:
    reading = await device.observe_device()
    assert reading is not None, f"no WireGuard device {device.name}"
    return reading.peers


async def exists(device: WireGuardDevice) -> bool:
    return await device.observe_device() is not None


async def add_peer(device: WireGuardDevice, peer: PeerSpec) -> None:
    await device.apply_peers([AddPeer(peer)])


async def update_peer(device: WireGuardDevice, change: UpdatePeer) -> None:
    await device.apply_peers([change])


async def remove_peer(device: WireGuardDevice, public_key: PublicKey) -> None:
    await device.apply_peers([RemovePeer(public_key)])
