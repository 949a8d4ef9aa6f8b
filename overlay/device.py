"""What the kernel and userspace WireGuard backends share: a named device that must carry our key."""

from __future__ import annotations

import logging

from keys.values import PrivateKey
from meshd.core.state import WireGuardDeviceSpec, WireGuardReading
from overlay import wireguard

log = logging.getLogger(__name__)


class KeyedDevice:
    """A WireGuard device `name` (in `netns`, None: ours) that must carry `private_key`. A backend reads
    the device (`_get`) and sets its key and port (`_set_device`); `configure` decides what to set."""

    def __init__(self, name: str, private_key: PrivateKey, netns: str | None) -> None:
        self.name = name
        self.netns = netns
        self._key = private_key
        self._public = private_key.public_key()

    def rekey(self, private_key: PrivateKey) -> None:
        """From now on the device must carry `private_key` (a key rotation); the next `configure` sets it."""
        self._key = private_key
        self._public = private_key.public_key()

    async def _get(self) -> WireGuardReading:
        raise NotImplementedError

    async def _set_device(self, key: PrivateKey | None, port: int | None) -> None:
        """Set the private key and/or listen port (None: leave it), at least one of them."""
        raise NotImplementedError

    async def configure(self, spec: WireGuardDeviceSpec) -> None:
        """Bring the device's key and port to `spec`, setting only what differs."""
        wireguard.check_spec(spec, name=self.name, public_key=self._public)
        dev = await self._get()
        set_key, port = wireguard.device_changes(spec, key=dev.public_key, port=dev.listen_port)
        key = self._key if set_key else None
        if key is None and port is None:
            log.debug("WireGuard device %s already has our key and port %s", self.name, dev.listen_port)
            return
        await self._set_device(key, port)
