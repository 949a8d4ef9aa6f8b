"""Proof that a node holds the WireGuard key it publishes (libsodium, through PyNaCl; no curve math here).

X25519 cannot sign, so a node's WireGuard key is derived from an Ed25519 identity: the private key is
`crypto_sign_ed25519_sk_to_curve25519` of the Ed25519 secret key, and the public key is therefore
`crypto_sign_ed25519_pk_to_curve25519` of the Ed25519 public key. A `KeyProof` is that Ed25519 public key
plus its signature over a domain-separated message that binds the node's name to its WireGuard public
key. Anyone can check it from the published record alone; only the holder of the seed can make one, and a
copied proof names the node it was made for.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass

from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from keys.values import KEY_LEN, PrivateKey, PublicKey, _decode_b64_key, _Secret, _strip_file_text

DOMAIN = b"meshd.io/key-proof/v1\x00"
"""Prefix of every signed message: a meshd key proof cannot be mistaken for any other Ed25519 signature."""
VERSION = "v1"
SIGNATURE_LEN = 64
_B64_SIG = 88


def proof_message(name: str, key: PublicKey) -> bytes:
    """What a proof signs: the domain, the 32-byte WireGuard public key, then the node name (UTF-8; the
    fixed-length key before the variable-length name keeps the encoding unambiguous)."""
    return DOMAIN + key.raw + name.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class KeyProof:
    """A published proof: an Ed25519 public key and a signature. Public values; `proves` checks them."""

    identity: bytes  # Ed25519 public key, 32 bytes
    signature: bytes  # Ed25519 signature, 64 bytes

    def __post_init__(self) -> None:
        if len(self.identity) != KEY_LEN or len(self.signature) != SIGNATURE_LEN:
            raise ValueError("a key proof is a 32-byte Ed25519 key and a 64-byte signature")

    @classmethod
    def parse(cls, text: object) -> KeyProof | None:
        """`v1:<identity>:<signature>` (canonical standard base64), or None for anything else. Never raises."""
        if not isinstance(text, str) or len(text) != len(VERSION) + 2 + 44 + _B64_SIG:
            return None
        version, _, rest = text.partition(":")
        identity, _, signature = rest.partition(":")
        if version != VERSION:
            return None
        try:
            raw_sig = base64.b64decode(signature, validate=True)
            proof = cls(_decode_b64_key(identity, "key proof identity"), raw_sig)
        except (binascii.Error, ValueError):
            return None
        return proof if proof.encode() == text else None  # canonical only: one text per proof

    def encode(self) -> str:
        b64 = base64.b64encode
        return f"{VERSION}:{b64(self.identity).decode('ascii')}:{b64(self.signature).decode('ascii')}"

    def proves(self, name: str, key: PublicKey) -> bool:
        """True when this proof was made, by the holder of `key`'s secret, for the node called `name`."""
        return _verify(self.identity, self.signature, name, key)


@functools.lru_cache(maxsize=4096)
def _verify(identity: bytes, signature: bytes, name: str, key: PublicKey) -> bool:
    """Pure, so memoized: a dispute that lasts costs one verification per record, not one per pass."""
    try:
        if sodium.crypto_sign_ed25519_pk_to_curve25519(identity) != key.raw:
            return False
        sodium.crypto_sign_open(signature + proof_message(name, key), identity)
    except CryptoError:  # a point not on the curve, of small order, or a bad signature
        return False
    return True


class KeySeed(_Secret):
    """An Ed25519 seed: the node's identity, from which its WireGuard private key is derived."""

    __slots__ = ()
    _what = "identity seed"

    @classmethod
    def generate(cls) -> KeySeed:
        return cls(sodium.randombytes(KEY_LEN))

    @classmethod
    def from_base64(cls, text: str) -> KeySeed:
        """A seed file's text: canonical base64, then only whitespace (like a `wg genkey` file)."""
        return cls(_decode_b64_key(_strip_file_text(text), cls._what))

    def _keypair(self) -> tuple[bytes, bytes]:
        public, secret = sodium.crypto_sign_seed_keypair(self._raw)
        return public, secret

    def wireguard_key(self) -> PrivateKey:
        """The WireGuard private key of this identity: `crypto_sign_ed25519_sk_to_curve25519`."""
        return PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(self._keypair()[1]))

    def prove(self, name: str) -> KeyProof:
        """A proof, for the node called `name`, that it holds the derived WireGuard key."""
        public, secret = self._keypair()
        message = proof_message(name, self.wireguard_key().public_key())
        return KeyProof(public, sodium.crypto_sign(message, secret)[:SIGNATURE_LEN])
