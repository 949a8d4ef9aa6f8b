"""A plain rtnetlink socket in one network namespace, for what is frequent at scale: many writes in one
`sendmsg` with their acknowledgements read together and each error mapped back to its request (`batch`),
dumps decoded by meshd's own small decoders (`dump`), and the kernel's change notifications (`drain`).

A socket in another namespace is opened from a short-lived thread that enters the namespace (setns
affects only that thread), so nothing forks and the agent's own thread never changes namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import itertools
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK

from meshd.errors import PermanentError
from meshd.rtnl_msgs import decode_link, dump_request, split

CLONE_NEWNET = 0x40000000
NETLINK_CAP_ACK = 10
SOL_NETLINK = 270
CHUNK = 16 * 1024  # bytes of requests per sendmsg: their acknowledgements fit the receive buffer
RECV = 1 << 20
Message = tuple[int, memoryview]  # (type, payload)
T = TypeVar("T")


class Request(Protocol):
    def encode(self, seq: int) -> bytes: ...


def _open(groups: int, protocol: int = socket.NETLINK_ROUTE) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without a copy of the request
        try:  # SO_RCVBUFFORCE: room for a batch's acknowledgements and for bursts of events
            sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def enter_netns(netns: str) -> None:
    """Move the calling thread into network namespace `netns` (threads it starts later follow it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"entering network namespace {netns}: {os.strerror(code)}")
    finally:
        os.close(fd)


def in_netns(netns: str, make: Callable[[], T]) -> T:
    """`make()` run in network namespace `netns`, from a short-lived thread that enters it (setns changes
    only that thread), e.g. to open a socket that then stays in that namespace."""
    result: list[T | BaseException] = []

    def enter_and_make() -> None:
        try:
            enter_netns(netns)
            result.append(make())
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=enter_and_make, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def open_socket(netns: str | None, groups: int = 0, protocol: int = socket.NETLINK_ROUTE) -> socket.socket:
    """A netlink socket (rtnetlink unless `protocol` says otherwise) in `netns` (None: ours), subscribed
    to `groups` (RTMGRP_* bits)."""
    if netns is None:
        return _open(groups, protocol)
    try:
        return in_netns(netns, lambda: _open(groups, protocol))
    except FileNotFoundError as exc:
        raise PermanentError(f"network namespace {netns} does not exist") from exc


async def _recv(sock: socket.socket) -> bytes:
    try:
        return await asyncio.get_running_loop().sock_recv(sock, RECV)
    except OSError as exc:  # ENOBUFS: replies were lost; the caller's error says what was being done
        raise NetlinkError(exc.errno or errno.EIO, str(exc)) from exc


@dataclass
class RawRtnl:
    """A lazily opened rtnetlink socket in `netns` (None: this process's namespace). With `protocol`
    NETLINK_GENERIC it is a generic-netlink socket, for `batch` only (requests of a genl family); `chunk`
    bounds the bytes of requests per sendmsg."""

    netns: str | None = None
    groups: int = 0
    protocol: int = socket.NETLINK_ROUTE
    chunk: int = CHUNK
    _sock: socket.socket | None = None
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = open_socket(self.netns, self.groups, self.protocol)
        return self._sock

    async def batch(self, requests: Sequence[Request]) -> list[int]:
        """Send every request, as few `sendmsg` calls as fit, and read all acknowledgements. Returns the
        errno of each request in order (0: done). A failed request does not stop the ones after it."""
        sock, loop = self.socket(), asyncio.get_running_loop()
        codes = [0] * len(requests)
        start = 0
        while start < len(requests):
            seqs: dict[int, int] = {}
            data = bytearray()
            while start < len(requests) and (not data or len(data) < self.chunk):
                seq = next(self._seq) & 0xFFFFFFFF
                seqs[seq] = start
                data += requests[start].encode(seq)
                start += 1
            await loop.sock_sendall(sock, bytes(data))
            while seqs:
                for kind, _, seq, payload in split(await _recv(sock)):
                    if kind == NLMSG_ERROR and seq in seqs:
                        codes[seqs.pop(seq)] = -int.from_bytes(payload[:4], "little", signed=True)
        return codes

    async def dump(self, kind: int, family: int) -> list[Message]:
        """Every object of `kind` (RTM_GETROUTE, RTM_GETNEIGH) in `family`, as (type, payload)."""
        sock, loop = self.socket(), asyncio.get_running_loop()
        seq = next(self._seq) & 0xFFFFFFFF
        await loop.sock_sendall(sock, dump_request(kind, family, seq))
        found: list[Message] = []
        while True:
            for msg_kind, _, msg_seq, payload in split(await _recv(sock)):
                if msg_seq != seq:
                    continue
                if msg_kind == NLMSG_DONE:
                    return found
                if msg_kind == NLMSG_ERROR:
                    code = -int.from_bytes(payload[:4], "little", signed=True)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    continue
                found.append((msg_kind, payload))

    async def link_names(self) -> dict[int, str]:
        return dict(decode_link(payload) for _, payload in await self.dump(RTM_GETLINK, socket.AF_UNSPEC))

    def drain(self) -> tuple[list[tuple[int, int, memoryview]], bool]:
        """The notifications waiting on a subscribed socket, without waiting; and whether some were lost
        (the receive buffer overflowed: only a full read can tell what the kernel holds now). Each as
        (type, flags, payload): NLM_F_REPLACE in the flags says the object replaced another."""
        sock, lost = self.socket(), False
        found: list[tuple[int, int, memoryview]] = []
        while True:
            try:
                data = sock.recv(RECV)
            except BlockingIOError:
                return found, lost
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            found.extend((kind, flags, payload) for kind, flags, _, payload in split(data))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
