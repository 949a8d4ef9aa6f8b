"""KernelWireGuard's netlink messages: decoding real wire-format replies (pyroute2 encodes, the adapter
decodes) and what the pyroute2 seam would send (pyroute2 decodes), with no kernel family needed."""

from __future__ import annotations

import base64
import socket
from types import SimpleNamespace
from typing import Any

from pyroute2.netlink.generic.wireguard import wgmsg

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import UpdatePeer
from overlay.kernel import KernelWireGuard, PyrouteWireGuardNetlink, decode_device
from tests.support.wg import add_peer, remove_peer, update_peer
from tests.support.wg_specs import NAME, net, peer

# --- decoding real wire-format replies (pyroute2 encodes, the adapter decodes) ----------------------


def _allowed(cidr: str) -> dict[str, Any]:
    n = net(cidr)
    fam = socket.AF_INET if n.version == 4 else socket.AF_INET6
    attrs = [
        ["WGALLOWEDIP_A_FAMILY", fam],
        ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(fam, str(n.network_address))],
        ["WGALLOWEDIP_A_CIDR_MASK", n.prefixlen],
    ]
    return {"attrs": attrs}


def _wire(device_attrs: list[list[Any]], peers: list[list[list[Any]]]) -> Any:
    msg = wgmsg()
    msg["cmd"], msg["version"] = 0, 1
    msg["attrs"] = [*device_attrs, ["WGDEVICE_A_PEERS", [{"attrs": p} for p in peers]]]
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def _b64(key: PublicKey) -> bytes:
    return base64.b64encode(key.raw)


def test_decode_device_from_wire_format_messages() -> None:
    me, a, b = PrivateKey.generate().public_key(), peer(1).public_key, peer(2).public_key
    first = _wire(
        [["WGDEVICE_A_IFNAME", NAME], ["WGDEVICE_A_PUBLIC_KEY", _b64(me)], ["WGDEVICE_A_LISTEN_PORT", 51820]],
        [
            [
                ["WGPEER_A_PUBLIC_KEY", _b64(a)],
                ["WGPEER_A_ENDPOINT", {"addr": "2001:db8:18::2", "port": 51821}],
                ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 25],
                ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": 1700000000, "tv_nsec": 500000000}],
                ["WGPEER_A_RX_BYTES", 200],
                ["WGPEER_A_TX_BYTES", 300],
                ["WGPEER_A_ALLOWEDIPS", [_allowed("198.19.1.0/24")]],
            ]
        ],
    )
    # the kernel continues a peer's allowed IPs in the next message, then the next peer
    second = _wire(
        [["WGDEVICE_A_IFNAME", NAME]],
        [
            [["WGPEER_A_PUBLIC_KEY", _b64(a)], ["WGPEER_A_ALLOWEDIPS", [_allowed("2001:db8:19:1::/64")]]],
            [["WGPEER_A_PUBLIC_KEY", _b64(b)], ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": 0, "tv_nsec": 0}]],
        ],
    )
    dev = decode_device([first, second])
    assert (dev.public_key, dev.listen_port) == (me, 51820)
    pa, pb = dev.peers
    assert pa.public_key == a and str(pa.endpoint) == "[2001:db8:18::2]:51821"
    assert pa.allowed_ips == {net("198.19.1.0/24"), net("2001:db8:19:1::/64")}
    assert (pa.persistent_keepalive, pa.last_handshake, pa.rx_bytes, pa.tx_bytes) == (
        25,
        1700000000.5,
        200,
        300,
    )
    assert (pb.public_key, pb.endpoint, pb.last_handshake, pb.allowed_ips) == (b, None, None, frozenset())


def test_decode_device_without_a_private_key() -> None:
    dev = decode_device([_wire([["WGDEVICE_A_IFNAME", NAME], ["WGDEVICE_A_LISTEN_PORT", 0]], [])])
    assert (dev.public_key, dev.listen_port, dev.peers) == (None, 0, ())


class _Recorder:
    """Stands in for the seam's genl batch socket: keeps the bytes each request would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def batch(self, requests: list[Any]) -> list[int]:
        self.sent += [r.encode(seq) for seq, r in enumerate(requests, 1)]
        return [0] * len(requests)

    def close(self) -> None:
        pass


async def test_the_pyroute2_seam_encodes_per_peer_flags_and_never_touches_other_peers() -> None:
    """Runs PyrouteWireGuardNetlink's encoding (no kernel family needed) and decodes what would go on the
    wire with pyroute2: add = REPLACE_ALLOWEDIPS (a new peer: the kernel ignores it), update = UPDATE_ONLY,
    changed allowed IPs = REPLACE_ALLOWEDIPS, remove = REMOVE_ME; never a device-level REPLACE_PEERS,
    never a private key."""
    seam = PyrouteWireGuardNetlink()
    seam._sock = SimpleNamespace(prid=0x20, close=lambda: None)  # the family id pyroute2 would resolve
    seam._batches = recorder = _Recorder()  # type: ignore[assignment]
    dev = KernelWireGuard(NAME, PrivateKey.generate(), client=seam)
    key = PublicKey(bytes([2]) * 32)
    await add_peer(dev, peer(2, "198.19.2.0/24"))
    await update_peer(dev, UpdatePeer(key, persistent_keepalive=25))
    await update_peer(dev, UpdatePeer(key, allowed_ips=frozenset({net("198.19.9.0/24")})))
    await remove_peer(dev, key)
    await seam.close()
    decoded = []
    for data in recorder.sent:
        msg = wgmsg(data)
        msg.decode()
        assert (msg["header"]["type"], msg["cmd"], msg.get_attr("WGDEVICE_A_IFNAME")) == (0x20, 1, NAME)
        assert msg.get_attr("WGDEVICE_A_FLAGS") in (None, 0)  # no WGDEVICE_F_REPLACE_PEERS
        assert msg.get_attr("WGDEVICE_A_PRIVATE_KEY") is None
        (p,) = msg.get_attr("WGDEVICE_A_PEERS")
        decoded.append((p.get_attr("WGPEER_A_FLAGS"), p.get_attr("WGPEER_A_ALLOWEDIPS") is not None))
    assert decoded == [(0x2, True), (0x4, False), (0x4 | 0x2, True), (0x1, False)]
