"""One PSK exchange over a byte stream, either role. The caller provides the stream (bound to the tunnel,
`sockets`), the pair's keys, and how to install the PSK; timeouts are the caller's too.

initiator                                   responder
  INIT(epoch, names, ek)            ->        epoch' = max(epoch, its next); (ss, ct) = Encaps(ek)
                                    <-        RESPONSE(epoch', ct, mac_R)
  ss = Decaps(ct); check mac_R
  CONFIRM(epoch', mac_I)            ->        check mac_I; install the PSK
                                    <-        DONE(epoch')
  install the PSK

The responder installs first and the initiator right after DONE, so the two ends differ for about one
round trip; a WireGuard handshake falling in that gap fails and is retried by WireGuard 5 s later, while
the current session keeps carrying traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey

from meshd.pq.derive import PairKeys, derive
from meshd.pq.wire import (
    HEADER,
    Confirm,
    Done,
    Init,
    Message,
    Refuse,
    Response,
    WireError,
    decode_body,
    encode,
    parse_header,
)

Install = Callable[[bytes], Awaitable[None]]
M = TypeVar("M", Init, Response, Confirm, Done)


class ExchangeError(Exception):
    """An exchange failed; `reason` is the metric label (protocol, refused, confirm, install, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def failure(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed exchange: its metric label and what to log."""
    if isinstance(exc, ExchangeError):
        return exc.reason, exc.detail
    return "timeout" if isinstance(exc, TimeoutError) else "connect", str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished exchange: this side installed the PSK of `epoch`; `fingerprint` names that PSK."""

    epoch: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the responder needs to answer an INIT it accepted."""

    pair: PairKeys
    next_epoch: int
    install: Install


Lookup = Callable[[Init], Accepted | str]
"""The responder's check of an INIT: the pair it belongs to, or why it is refused."""


async def read_message(reader: asyncio.StreamReader) -> Message:
    try:
        header = await reader.readexactly(HEADER.size)
        kind, length = parse_header(header)
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ExchangeError(
            "protocol", f"connection closed after {len(exc.partial)} bytes of a message"
        ) from exc
    except WireError as exc:
        raise ExchangeError("protocol", str(exc)) from exc
    try:
        return decode_body(kind, body)
    except WireError as exc:
        raise ExchangeError("protocol", str(exc)) from exc


async def _send(writer: asyncio.StreamWriter, msg: Message) -> None:
    writer.write(encode(msg))
    await writer.drain()


async def _expect(reader: asyncio.StreamReader, want: type[M], epoch: int | None = None) -> M:
    msg = await read_message(reader)
    if isinstance(msg, Refuse):
        raise ExchangeError("refused", f"the peer refused: {msg.reason}")
    if not isinstance(msg, want):
        raise ExchangeError("protocol", f"expected {want.__name__}, got {type(msg).__name__}")
    if epoch is not None and msg.epoch != epoch:
        raise ExchangeError("protocol", f"{want.__name__} for epoch {msg.epoch}, expected {epoch}")
    return msg


async def refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    with contextlib.suppress(OSError):
        await _send(writer, Refuse(reason))


async def initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pair: PairKeys,
    *,
    epoch: int,
    install: Install,
) -> Outcome:
    key = MLKEM768PrivateKey.generate()
    ek = key.public_key().public_bytes_raw()
    await _send(writer, Init(epoch, pair.initiator, pair.responder, ek))
    resp = await _expect(reader, Response)
    if resp.epoch < epoch:
        raise ExchangeError("protocol", f"the responder lowered the epoch from {epoch} to {resp.epoch}")
    derived = derive(key.decapsulate(resp.ct), pair, epoch=resp.epoch, ek=ek, ct=resp.ct)
    if not derived.check("responder", resp.mac):
        await refuse(writer, "key confirmation failed")
        raise ExchangeError(
            "confirm", "the responder's key confirmation does not match (different views of the pair?)"
        )
    await _send(writer, Confirm(resp.epoch, derived.mac("initiator")))
    await _expect(reader, Done, resp.epoch)
    await _install(install, derived.psk)
    return Outcome(resp.epoch, derived.fingerprint)


async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lookup: Lookup) -> Outcome:
    init = await _expect(reader, Init)
    accepted = lookup(init)
    if isinstance(accepted, str):
        await refuse(writer, accepted)
        raise ExchangeError("refused", accepted)
    epoch = max(init.epoch, accepted.next_epoch)
    try:
        shared, ct = MLKEM768PublicKey.from_public_bytes(init.ek).encapsulate()
    except ValueError as exc:
        await refuse(writer, "bad encapsulation key")
        raise ExchangeError(
            "protocol", "the initiator's encapsulation key is not a valid ML-KEM-768 key"
        ) from exc
    derived = derive(shared, accepted.pair, epoch=epoch, ek=init.ek, ct=ct)
    await _send(writer, Response(epoch, ct, derived.mac("responder")))
    confirm = await _expect(reader, Confirm, epoch)
    if not derived.check("initiator", confirm.mac):
        await refuse(writer, "key confirmation failed")
        raise ExchangeError("confirm", "the initiator's key confirmation does not match")
    await _install(accepted.install, derived.psk)
    await _send(writer, Done(epoch))
    return Outcome(epoch, derived.fingerprint)


async def _install(install: Install, psk: bytes) -> None:
    try:
        await install(psk)
    except Exception as exc:  # the device refused or is gone: the exchange failed, nothing half-done here
        raise ExchangeError(
            "install", f"setting the preshared key failed: {type(exc).__name__}: {exc}"
        ) from exc
