"""The preshared key and the key confirmations of one exchange, from the ML-KEM shared secret. Pure.

transcript = SHA-256 of the length-prefixed fields: label, epoch, initiator name, responder name, both
WireGuard public keys (initiator's first), the encapsulation key and the KEM ciphertext.
HKDF-SHA256(ikm = shared secret, salt = transcript, info = label) gives 64 bytes: the PSK, then the
confirmation key. Each side proves it derived the same keys with HMAC-SHA256(confirmation key, role +
transcript), so a mismatch (a different view of the pair's keys or names) is found before anything is
installed.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys.values import PublicKey

LABEL = b"meshd.io/pq-psk/v1"
PSK_SIZE = 32


@dataclass(frozen=True, slots=True)
class PairKeys:
    """Who is who in one exchange: the initiator (lower node name) first. Both sides build it from the
    node records, so a different view of a name or key changes the transcript and fails the confirmation."""

    initiator: str
    responder: str
    initiator_key: PublicKey
    responder_key: PublicKey


class Derived:
    """The PSK and the confirmation key. Never printed: repr and str name only the fingerprint."""

    __slots__ = ("_confirm", "psk", "transcript")

    def __init__(self, psk: bytes, confirm: bytes, transcript: bytes) -> None:
        self.psk, self._confirm, self.transcript = psk, confirm, transcript

    def mac(self, role: str) -> bytes:
        return hmac.new(self._confirm, role.encode() + self.transcript, hashlib.sha256).digest()

    def check(self, role: str, mac: bytes) -> bool:
        return hmac.compare_digest(self.mac(role), mac)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.psk)

    def __repr__(self) -> str:
        return f"Derived(fingerprint={self.fingerprint})"

    __str__ = __repr__


def fingerprint(psk: bytes) -> str:
    """8 hex digits of a hash of the PSK: enough to compare two ends, useless to find the key."""
    return hashlib.sha256(LABEL + b"/fingerprint" + psk).hexdigest()[:8]


def transcript(pair: PairKeys, *, epoch: int, ek: bytes, ct: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (
        LABEL,
        struct.pack("!Q", epoch),
        pair.initiator.encode(),
        pair.responder.encode(),
        pair.initiator_key.raw,
        pair.responder_key.raw,
        ek,
        ct,
    ):
        h.update(struct.pack("!I", len(part)) + part)
    return h.digest()


def derive(shared_secret: bytes, pair: PairKeys, *, epoch: int, ek: bytes, ct: bytes) -> Derived:
    binding = transcript(pair, epoch=epoch, ek=ek, ct=ct)
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * PSK_SIZE, salt=binding, info=LABEL).derive(shared_secret)
    return Derived(okm[:PSK_SIZE], okm[PSK_SIZE:], binding)
