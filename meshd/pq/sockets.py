"""TCP sockets held to the WireGuard device: the listener accepts only connections that arrived over it,
and the initiator's connection can only leave through it (SO_BINDTODEVICE), from our inner address.

A packet that WireGuard delivers on its device with a source inside a peer's allowed IPs was authenticated
with that peer's key (cryptokey routing), so a connection from the peer's inner address on the device is
the peer. Nothing falls back to another path: with no route over the device the connection fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

from meshd.core.model import IPAddress

PSK_PORT = 51821
"""TCP port of the exchange, on each node's inner address (reachable only through the tunnel)."""


def _socket(addr: IPAddress, device: str) -> socket.socket:
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_socket(addr: IPAddress, device: str, port: int = PSK_PORT) -> socket.socket:
    sock = _socket(addr, device)
    try:
        sock.bind((str(addr), port))
        sock.listen(32)
    except OSError:
        sock.close()
        raise
    return sock


async def connect(
    local: IPAddress, remote: IPAddress, device: str, port: int = PSK_PORT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = _socket(local, device)
    try:
        sock.bind((str(local), 0))
        await asyncio.get_running_loop().sock_connect(sock, (str(remote), port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


def peer_address(writer: asyncio.StreamWriter) -> IPAddress | None:
    name = writer.get_extra_info("peername")
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return ipaddress.ip_address(name[0])
    return None
