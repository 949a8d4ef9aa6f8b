"""WireGuard key values, the on-disk key store and rotation."""

from keys.store import KeyFileError, load, load_or_create
from keys.values import InvalidKeyError, PrivateKey, PublicKey

__all__ = ["InvalidKeyError", "KeyFileError", "PrivateKey", "PublicKey", "load", "load_or_create"]
