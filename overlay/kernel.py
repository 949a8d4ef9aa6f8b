"""WireGuard in the kernel, through rtnetlink (the link) and the `wireguard` generic-netlink family.

Library choice: pyroute2's `AsyncWireGuard` rather than wgnlpy for reads and the device's key and port.
wgnlpy is synchronous and always binds in the caller's namespace (it would need a thread that setns()-es),
while `AsyncWireGuard` runs on our event loop and opens in a named namespace with `flags=0` (never
creating one). Peers go out in batches instead (overlay/wg_msgs.py): many peers per set-device message,
several messages per `sendmsg` on a plain genl socket (meshd/rtnl.py's `RawRtnl.batch`), their
acknowledgements read together, with exactly the per-peer flags we choose (update-only,
replace-allowed-IPs, remove), never replace-peers.

The adapter talks to a narrow `WireGuardNetlink` seam: `PyrouteWireGuardNetlink` is the real one, and
tests/fakes/wg_genl.py is a behavioural fake that acts like the kernel family.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pyroute2.netlink import NETLINK_GENERIC
from pyroute2.netlink.exceptions import NetlinkError

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import PeerAction
from meshd.core.model import Endpoint
from meshd.core.state import ObservedPeer, WireGuardDeviceSpec, WireGuardReading
from meshd.errors import MeshdError, PermanentError
from meshd.netlink import NetlinkSocket, translate, wireguard_socket
from meshd.rtnl import RawRtnl
from overlay import kernel_peers, wireguard
from overlay.device import KeyedDevice
from overlay.wg_msgs import MESSAGE, PSK_SIZE, GenlPeer, SetPeers

log = logging.getLogger(__name__)

ABSENT = frozenset({errno.EOPNOTSUPP, errno.ENOENT})  # no wireguard link kind, no genl family


class WireGuardNetlink(Protocol):
    """Link and `wireguard` genl operations on one namespace. Errors are pyroute2 `NetlinkError`s."""

    async def link_add(self, name: str) -> None: ...

    async def link_up(self, name: str) -> bool: ...

    async def link_delete(self, name: str) -> bool: ...

    async def get_device(self, name: str) -> WireGuardReading: ...

    async def set_device(self, name: str, *, private_key: bytes | None, listen_port: int | None) -> None: ...

    async def set_peers(self, name: str, messages: Sequence[Sequence[GenlPeer]]) -> list[int]:
        """Send each message (one set-device request with these peers), as few `sendmsg` calls as fit;
        the errno of each (0: applied), in order. A refused message does not stop the ones after it; the
        kernel applies the peers of a refused message up to the one it refuses."""
        ...

    async def close(self) -> None: ...


class PyrouteWireGuardNetlink:
    """The real seam: one long-lived rtnetlink socket for the link, one `wireguard` genl socket."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._links = NetlinkSocket(netns=netns)
        self._sock: Any = None
        self._batches = RawRtnl(netns, protocol=NETLINK_GENERIC, chunk=4 * MESSAGE)

    async def _wg(self) -> Any:
        if self._sock is None:
            self._sock = await wireguard_socket(self.netns)  # NetlinkError ENOENT: the family is absent
        return self._sock

    async def link_add(self, name: str) -> None:
        await self._links.ipr().link("add", ifname=name, kind="wireguard")

    async def link_up(self, name: str) -> bool:
        return await self._links.set_up(name)

    async def link_delete(self, name: str) -> bool:
        return await self._links.delete_link(name)

    async def get_device(self, name: str) -> WireGuardReading:
        wg = await self._wg()
        reply = await wg.info(name)
        messages = [m async for m in reply] if hasattr(reply, "__aiter__") else list(reply)
        return decode_device(messages)

    async def set_device(self, name: str, *, private_key: bytes | None, listen_port: int | None) -> None:
        wg = await self._wg()
        key = None if private_key is None else PrivateKey(private_key).base64
        await wg.set(name, private_key=key, listen_port=listen_port)

    async def set_peers(self, name: str, messages: Sequence[Sequence[GenlPeer]]) -> list[int]:
        family = int((await self._wg()).prid)  # genl family ids are global: pyroute2 resolved it
        return await self._batches.batch([SetPeers(family, name, tuple(m)) for m in messages])

    async def close(self) -> None:
        self._links.close()
        self._batches.close()
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


def _error(exc: NetlinkError, operation: str) -> MeshdError:
    return translate(exc, operation, lacking="WireGuard", absent=ABSENT)


class KernelWireGuard(KeyedDevice):
    """The `WireGuardDevice` port over kernel WireGuard. `client` defaults to the pyroute2 seam."""

    def __init__(
        self,
        name: str,
        private_key: PrivateKey,
        netns: str | None = None,
        *,
        client: WireGuardNetlink | None = None,
    ) -> None:
        super().__init__(name, private_key, netns)
        self.client: WireGuardNetlink = client if client is not None else PyrouteWireGuardNetlink(netns)

    async def _get(self) -> WireGuardReading:
        device = await self.observe_device()
        if device is None:
            raise PermanentError(f"reading WireGuard device {self.name}: no such device")
        return device

    async def observe_device(self) -> WireGuardReading | None:
        try:
            return await self.client.get_device(self.name)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.EOPNOTSUPP):
                return None
            raise _error(exc, f"reading WireGuard device {self.name}") from exc

    async def create(self, spec: WireGuardDeviceSpec) -> None:
        wireguard.check_spec(spec, name=self.name, public_key=self._public)
        if await self.observe_device() is not None:
            log.info("adopting the existing WireGuard link %s", self.name)
        else:
            log.info("creating WireGuard link %s", self.name)
            try:
                await self.client.link_add(self.name)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise PermanentError(f"link {self.name} exists and is not a WireGuard device") from exc
                raise _error(exc, f"creating WireGuard link {self.name}") from exc
        await self.client.link_up(self.name)
        await self.configure(spec)

    async def _set_device(self, key: PrivateKey | None, port: int | None) -> None:
        log.info("configuring WireGuard device %s (key %s..., port %s)", self.name, self._public.short, port)
        raw = bytes.fromhex(key.hex) if key is not None else None
        call = self.client.set_device(self.name, private_key=raw, listen_port=port)
        await self._call(f"configuring WireGuard device {self.name}", call)

    async def apply_peers(self, changes: Sequence[PeerAction]) -> None:
        """Every change validated before anything is sent, then many peers per set-device message and
        several messages per `sendmsg` (overlay/kernel_peers.py): 5000 new peers cost a few round trips."""
        await self._send([kernel_peers.peer_entry(change) for change in changes])

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        """Set (None: clear) the preshared keys of existing peers; nothing else of them changes."""
        await self._send([kernel_peers.psk_entry(key, psk) for key, psk in changes])

    async def _send(self, entries: Sequence[kernel_peers.Entry]) -> None:
        doing = f"changing {len(entries)} peers on {self.name}"
        await self._call(doing, kernel_peers.send(self.client, self.name, entries))

    async def _call(self, operation: str, call: Awaitable[None]) -> None:
        try:
            await call
        except NetlinkError as exc:
            raise _error(exc, operation) from exc

    async def delete(self) -> None:
        if await self.client.link_delete(self.name):
            log.info("deleted WireGuard link %s", self.name)

    async def close(self) -> None:
        await self.client.close()


def decode_device(messages: Iterable[Any]) -> WireGuardReading:
    """A pyroute2 `wgmsg` dump as a WireGuardReading. Big devices span several messages, and one peer's
    allowed IPs may continue in the next message (same public key): those are merged."""
    msgs = list(messages)
    if not msgs:
        raise PermanentError("empty WireGuard get-device reply")
    first = msgs[0]
    pub = first.get_attr("WGDEVICE_A_PUBLIC_KEY")
    peers: list[ObservedPeer] = []
    for msg in msgs:
        for raw in msg.get_attr("WGDEVICE_A_PEERS") or ():
            peer = _decode_peer(raw)
            if peers and peers[-1].public_key == peer.public_key:
                last = peers.pop()
                peer = replace(last, allowed_ips=last.allowed_ips | peer.allowed_ips)
            peers.append(peer)
    return WireGuardReading(
        public_key=PublicKey(base64.b64decode(pub)) if pub else None,
        listen_port=int(first.get_attr("WGDEVICE_A_LISTEN_PORT") or 0),
        peers=tuple(peers),
    )


def _decode_peer(peer: Any) -> ObservedPeer:
    endpoint = None
    ep = peer.get_attr("WGPEER_A_ENDPOINT")
    if ep is not None and int(ep["port"]):
        endpoint = Endpoint(ipaddress.ip_address(ep["addr"]), int(ep["port"]))
    handshake = None
    hs = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
    if hs is not None and (hs["tv_sec"] or hs["tv_nsec"]):
        handshake = int(hs["tv_sec"]) + int(hs["tv_nsec"]) / 1e9
    ips = frozenset(
        ipaddress.ip_network(a["addr"], strict=False) for a in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ()
    )
    return ObservedPeer(
        public_key=PublicKey(base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY"))),
        endpoint=endpoint,
        allowed_ips=ips,
        persistent_keepalive=int(peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0),
        last_handshake=handshake,
        rx_bytes=int(peer.get_attr("WGPEER_A_RX_BYTES") or 0),
        tx_bytes=int(peer.get_attr("WGPEER_A_TX_BYTES") or 0),
        has_psk=_nonzero_key(peer.get_attr("WGPEER_A_PRESHARED_KEY")),
    )


def _nonzero_key(value: Any) -> bool:
    """Whether a key attribute (base64 text or raw bytes, as pyroute2 gives it) is set (not all zeros)."""
    if not value:
        return False
    raw = value if isinstance(value, bytes) and len(value) == PSK_SIZE else base64.b64decode(value)
    return any(raw)
