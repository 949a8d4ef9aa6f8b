"""The PSK exchange's messages: framing and parsing. Pure.

Frame: magic `MQ`, version 1, type (1 byte), body length (4 bytes, big-endian), body. Integers are
big-endian; a name is one length byte then UTF-8. A frame that is short, too long, of another version or
type, or whose body does not have the exact size its type demands raises `WireError` saying which.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"MQ"
VERSION = 1
HEADER = struct.Struct("!2sBBI")
MAX_BODY = 4096
EK_SIZE = 1184  # ML-KEM-768 encapsulation key
CT_SIZE = 1088  # ML-KEM-768 ciphertext
MAC_SIZE = 32
_EPOCH = struct.Struct("!Q")


class WireError(ValueError):
    """A message that does not parse; the message says what is wrong (never any key material)."""


class Kind(IntEnum):
    INIT = 1  # initiator -> responder: epoch, names, encapsulation key
    RESPONSE = 2  # responder -> initiator: epoch (maybe raised), ciphertext, responder's confirmation
    CONFIRM = 3  # initiator -> responder: epoch, initiator's confirmation
    DONE = 4  # responder -> initiator: epoch; the responder installed the PSK
    REFUSE = 5  # either way: a one-line reason, then the connection closes


@dataclass(frozen=True, slots=True)
class Init:
    """Opens an exchange: the initiator (lower node name) proposes `epoch` and sends a fresh ML-KEM key."""

    epoch: int
    initiator: str
    responder: str
    ek: bytes  # the ML-KEM-768 encapsulation key, EK_SIZE bytes


@dataclass(frozen=True, slots=True)
class Response:
    """The responder's answer to an accepted INIT, at an epoch never lower than the one proposed (raised
    to the pair's next epoch when the initiator is behind)."""

    epoch: int
    ct: bytes  # the KEM ciphertext, CT_SIZE bytes
    mac: bytes  # the responder's key confirmation


@dataclass(frozen=True, slots=True)
class Confirm:
    """The initiator's key confirmation, sent once the responder's checked out. The responder installs
    the PSK only after checking it, then answers DONE."""

    epoch: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """The responder checked the initiator's confirmation and installed the PSK; now the initiator does."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """Either side gives up: a one-line reason (sent cut to 200 bytes), then the connection closes."""

    reason: str


Message = Init | Response | Confirm | Done | Refuse


def _name(text: str) -> bytes:
    raw = text.encode()
    if not 0 < len(raw) < 256:
        raise WireError(f"node name of {len(raw)} bytes cannot be sent (1-255)")
    return bytes([len(raw)]) + raw


def _sized(what: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise WireError(f"{what} is {len(value)} bytes, expected {size}")
    return value


def encode(msg: Message) -> bytes:
    match msg:
        case Init(epoch, initiator, responder, ek):
            kind = Kind.INIT
            body = _EPOCH.pack(epoch) + _name(initiator) + _name(responder) + _sized("ek", ek, EK_SIZE)
        case Response(epoch, ct, mac):
            kind = Kind.RESPONSE
            body = _EPOCH.pack(epoch) + _sized("ct", ct, CT_SIZE) + _sized("mac", mac, MAC_SIZE)
        case Confirm(epoch, mac):
            kind, body = Kind.CONFIRM, _EPOCH.pack(epoch) + _sized("mac", mac, MAC_SIZE)
        case Done(epoch):
            kind, body = Kind.DONE, _EPOCH.pack(epoch)
        case Refuse(reason):
            kind, body = Kind.REFUSE, reason.encode()[:200]
    return HEADER.pack(MAGIC, VERSION, kind, len(body)) + body


def parse_header(header: bytes) -> tuple[Kind, int]:
    """The type and body length of a frame, from its first HEADER.size bytes."""
    if len(header) != HEADER.size:
        raise WireError(f"truncated header: {len(header)} of {HEADER.size} bytes")
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise WireError(f"not a meshd PSK exchange message (magic {magic!r})")
    if version != VERSION:
        raise WireError(f"protocol version {version}, this agent speaks {VERSION}")
    if kind not in Kind.__members__.values():
        raise WireError(f"unknown message type {kind}")
    if length > MAX_BODY:
        raise WireError(f"body of {length} bytes exceeds {MAX_BODY}")
    return Kind(kind), length


def decode(frame: bytes) -> Message:
    """One whole frame (header and body) as a message."""
    kind, length = parse_header(frame[: HEADER.size])
    body = frame[HEADER.size :]
    if len(body) != length:
        raise WireError(f"truncated {kind.name} message: body of {len(body)} of {length} bytes")
    return decode_body(kind, body)


def decode_body(kind: Kind, body: bytes) -> Message:
    if kind == Kind.REFUSE:
        return Refuse(body.decode(errors="replace"))
    reader = _Reader(kind, body)
    epoch = reader.epoch()
    match kind:
        case Kind.INIT:
            msg: Message = Init(epoch, reader.name(), reader.name(), reader.take(EK_SIZE, "ek"))
        case Kind.RESPONSE:
            msg = Response(epoch, reader.take(CT_SIZE, "ct"), reader.take(MAC_SIZE, "mac"))
        case Kind.CONFIRM:
            msg = Confirm(epoch, reader.take(MAC_SIZE, "mac"))
        case _:
            msg = Done(epoch)
    reader.end()
    return msg


class _Reader:
    def __init__(self, kind: Kind, body: bytes) -> None:
        self.kind, self.body, self.at = kind, body, 0

    def take(self, n: int, what: str) -> bytes:
        if self.at + n > len(self.body):
            raise WireError(f"truncated {self.kind.name} message: {what} needs {n} bytes at offset {self.at}")
        out = self.body[self.at : self.at + n]
        self.at += n
        return out

    def epoch(self) -> int:
        value: int = _EPOCH.unpack(self.take(_EPOCH.size, "epoch"))[0]
        return value

    def name(self) -> str:
        raw = self.take(self.take(1, "name length")[0], "name")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise WireError(f"{self.kind.name} message: node name is not UTF-8") from None

    def end(self) -> None:
        if self.at != len(self.body):
            raise WireError(f"{self.kind.name} message has {len(self.body) - self.at} bytes too many")
