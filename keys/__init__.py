"""WireGuard key values and the on-disk key store.

A node's key is created once and meshd never replaces it: there is no key rotation.
"""

from keys.store import KeyFileError, load, load_or_create
from keys.values import InvalidKeyError, PrivateKey, PublicKey

__all__ = ["InvalidKeyError", "KeyFileError", "PrivateKey", "PublicKey", "load", "load_or_create"]
