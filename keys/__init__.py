"""WireGuard key values, the node's identity (proof of key possession) and the on-disk key store.

A node's key is created once and meshd never replaces it: there is no key rotation.
"""

from keys.proof import KeyProof, KeySeed
from keys.store import KeyFileError, NodeKey, load, load_or_create
from keys.values import InvalidKeyError, PrivateKey, PublicKey

__all__ = [
    "InvalidKeyError",
    "KeyFileError",
    "KeyProof",
    "KeySeed",
    "NodeKey",
    "PrivateKey",
    "PublicKey",
    "load",
    "load_or_create",
]
