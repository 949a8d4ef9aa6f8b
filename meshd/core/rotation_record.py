"""The key-rotation annotations (the protocol is in meshd.core.rotation). Pure. Garbage decodes to None:
a node whose rotation annotation does not parse simply takes part in no rotation; its record stays valid.

- `meshd.io/key-rotation` (the rotating node): `v1:<id>:<phase>:<helper key>:<helper port>:<node,...>`
- `meshd.io/key-rotation-ack` (a peer hosting it): `v1:<rotating node>:<id>:<phase>:<helper key>:<port>`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from keys.values import InvalidKeyError, PublicKey

ROTATION = "meshd.io/key-rotation"
ROTATION_ACK = "meshd.io/key-rotation-ack"
_ID = re.compile(r"[0-9a-f]{8,32}")
_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")


class Phase(StrEnum):
    """Where a node's rotation stands: helpers being set up, routes on the helpers, new key in place."""

    PREPARE = "prepare"
    DIVERT = "divert"
    SWITCH = "switch"


@dataclass(frozen=True, slots=True)
class Helper:
    """A node's helper WireGuard link: its throwaway public key and its listen port."""

    public_key: PublicKey
    port: int

    def encode(self) -> str:
        return f"{self.public_key.base64}:{self.port}"


@dataclass(frozen=True, slots=True)
class RotationRecord:
    """A rotation in progress, as its node publishes it. `nodes`: the peers it diverted (from DIVERT on)."""

    id: str
    phase: Phase
    helper: Helper
    nodes: frozenset[str] = frozenset()

    def encode(self) -> str:
        return _encode(self.id, self.phase, self.helper, ",".join(sorted(self.nodes)))


@dataclass(frozen=True, slots=True)
class RotationAck:
    """A peer hosting `node`'s rotation `id` has done what `phase` asks of it, with its helper `helper`."""

    node: str
    id: str
    phase: Phase
    helper: Helper

    def encode(self) -> str:
        return _encode(self.node, self.id, self.phase, self.helper)


def _encode(*fields: str | Phase | Helper) -> str:
    return ":".join(["v1", *(f.encode() if isinstance(f, Helper) else str(f) for f in fields)])


def _fields(value: object, limit: int) -> list[str] | None:
    """The six fields of a v1 annotation of at most `limit` characters (the first one, "v1", checked)."""
    if not isinstance(value, str) or len(value) > limit:
        return None
    parts = value.split(":")
    return parts if len(parts) == 6 and parts[0] == "v1" else None


def _helper(key: str, port: str) -> Helper | None:
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        return None
    try:
        return Helper(PublicKey.from_base64(key), int(port))
    except (InvalidKeyError, ValueError):
        return None


def _phase(text: str) -> Phase | None:
    return next((p for p in Phase if p.value == text), None)


def decode_rotation(value: object) -> RotationRecord | None:
    parts = _fields(value, 8192)
    if parts is None or not _ID.fullmatch(parts[1]):
        return None
    phase, helper = _phase(parts[2]), _helper(parts[3], parts[4])
    nodes = frozenset(n for n in parts[5].split(",") if n)
    if phase is None or helper is None or not all(_NAME.fullmatch(n) for n in nodes):
        return None
    return RotationRecord(parts[1], phase, helper, nodes)


def decode_ack(value: object) -> RotationAck | None:
    parts = _fields(value, 512)
    if parts is None or not _NAME.fullmatch(parts[1]) or not _ID.fullmatch(parts[2]):
        return None
    phase, helper = _phase(parts[3]), _helper(parts[4], parts[5])
    if phase is None or helper is None:
        return None
    return RotationAck(parts[1], parts[2], phase, helper)
