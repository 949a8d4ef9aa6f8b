"""A behavioural fake of kernel WireGuard behind the `WireGuardNetlink` seam of overlay/kernel.py.

It acts like the kernel: links by name, set-device messages of many peers applied in order with the
kernel's flag semantics (upsert, update-only skips unknown peers, replace-allowed-IPs only on the given
peer, an allowed IP moves from the peer that had it, remove), a message's peers applied up to the first
one refused (EINVAL for a malformed key, EOPNOTSUPP for an unknown flag; `refuse` makes it refuse a
key as the real kernel would refuse something that passed meshd's checks), ENODEV for a missing device,
EOPNOTSUPP for `link add` when the "module" is absent. Tests can simulate traffic to move handshakes and
counters.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pyroute2.netlink.exceptions import NetlinkError

from keys.values import KEY_LEN, PrivateKey, PublicKey
from meshd.core.model import Endpoint, IPNetwork
from meshd.core.state import ObservedPeer, WireGuardReading
from overlay.wg_msgs import (
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    GenlPeer,
)

ALL_FLAGS = WGPEER_F_REMOVE_ME | WGPEER_F_REPLACE_ALLOWEDIPS | WGPEER_F_UPDATE_ONLY


def _err(code: int) -> NetlinkError:
    return NetlinkError(code, errno.errorcode.get(code, "?"))


@dataclass
class FakePeer:
    public_key: PublicKey
    endpoint: Endpoint | None = None
    keepalive: int = 0
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    last_handshake: float | None = None
    rx: int = 0
    tx: int = 0
    preshared_key: bytes = bytes(KEY_LEN)  # all zeros: none


@dataclass
class FakeDevice:
    up: bool = False
    private_key: bytes | None = None
    listen_port: int = 0
    peers: dict[PublicKey, FakePeer] = field(default_factory=dict)


@dataclass
class FakeWireGuardNetlink:
    supported: bool = True
    devices: dict[str, FakeDevice] = field(default_factory=dict)
    other_links: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, object]] = field(default_factory=list)  # (op, dev, message or peer)
    sends: list[list[tuple[GenlPeer, ...]]] = field(default_factory=list)  # the messages of each set_peers
    refuse: dict[PublicKey, int] = field(default_factory=dict)  # a peer refused with this errno
    _next_port: int = 40000

    # --- links -------------------------------------------------------------------------------

    async def link_exists(self, name: str) -> bool:
        return name in self.devices or name in self.other_links

    async def link_add(self, name: str) -> None:
        self.calls.append(("link_add", name, None))
        if not self.supported:
            raise _err(errno.EOPNOTSUPP)
        if await self.link_exists(name):
            raise _err(errno.EEXIST)
        self.devices[name] = FakeDevice()

    async def link_up(self, name: str) -> bool:
        dev = self._dev(name)
        was, dev.up = dev.up, True
        return not was

    async def link_delete(self, name: str) -> bool:
        self.calls.append(("link_delete", name, None))
        return self.devices.pop(name, None) is not None

    # --- genl --------------------------------------------------------------------------------

    def _dev(self, name: str) -> FakeDevice:
        if name in self.other_links:
            raise _err(errno.EOPNOTSUPP)
        if not self.supported:
            raise _err(errno.ENOENT)
        if name not in self.devices:
            raise _err(errno.ENODEV)
        return self.devices[name]

    async def get_device(self, name: str) -> WireGuardReading:
        dev = self._dev(name)
        public = PrivateKey(dev.private_key).public_key() if dev.private_key else None
        peers = tuple(
            ObservedPeer(
                p.public_key,
                p.endpoint,
                frozenset(p.allowed_ips),
                p.keepalive,
                p.last_handshake,
                p.rx,
                p.tx,
                any(p.preshared_key),
            )
            for p in dev.peers.values()
        )
        return WireGuardReading(public, dev.listen_port, peers)

    async def set_device(self, name: str, *, private_key: bytes | None, listen_port: int | None) -> None:
        dev = self._dev(name)
        if private_key is not None and len(private_key) != KEY_LEN:
            raise _err(errno.EINVAL)
        self.calls.append(("set_device", name, ("key" if private_key else None, listen_port)))
        if private_key is not None:
            dev.private_key = private_key
        if listen_port is not None:
            if listen_port == 0:
                listen_port, self._next_port = self._next_port, self._next_port + 1
            dev.listen_port = listen_port

    async def set_peers(self, name: str, messages: Sequence[Sequence[GenlPeer]]) -> list[int]:
        self.sends.append([tuple(m) for m in messages])
        return [self._set_message(name, message) for message in messages]

    def _set_message(self, name: str, message: Sequence[GenlPeer]) -> int:
        try:
            dev = self._dev(name)
            for peer in message:
                self._set_peer(dev, name, peer)
        except NetlinkError as exc:
            return int(exc.code)
        return 0

    def _set_peer(self, dev: FakeDevice, name: str, peer: GenlPeer) -> None:
        if len(peer.public_key) != KEY_LEN:
            raise _err(errno.EINVAL)
        if peer.flags & ~ALL_FLAGS:
            raise _err(errno.EOPNOTSUPP)
        key = PublicKey(peer.public_key)
        if key in self.refuse:
            raise _err(self.refuse[key])
        self.calls.append(("set_peer", name, peer))
        if peer.flags & WGPEER_F_REMOVE_ME:
            dev.peers.pop(key, None)
            return
        current = dev.peers.get(key)
        if current is None:
            if peer.flags & WGPEER_F_UPDATE_ONLY:
                return
            current = dev.peers[key] = FakePeer(key)
        if peer.endpoint is not None:
            current.endpoint = peer.endpoint
        if peer.persistent_keepalive is not None:
            current.keepalive = peer.persistent_keepalive
        if peer.preshared_key is not None:
            current.preshared_key = peer.preshared_key
        if peer.flags & WGPEER_F_REPLACE_ALLOWEDIPS:
            current.allowed_ips = []
        for net in peer.allowed_ips or ():
            for other in dev.peers.values():  # the kernel's trie has one owner per prefix
                if net in other.allowed_ips:
                    other.allowed_ips.remove(net)
            current.allowed_ips.append(net)

    async def close(self) -> None:
        pass

    # --- test helpers ------------------------------------------------------------------------

    def traffic(self, name: str, key: PublicKey, *, at: float, rx: int, tx: int) -> None:
        """Simulate a handshake at `at` and `rx`/`tx` more bytes with one peer."""
        peer = self.devices[name].peers[key]
        self.devices[name].peers[key] = replace(peer, last_handshake=at, rx=peer.rx + rx, tx=peer.tx + tx)
