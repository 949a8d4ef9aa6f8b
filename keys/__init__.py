"""WireGuard key values, the on-disk key store and rotation."""

from keys.values import InvalidKeyError, PrivateKey, PublicKey

__all__ = ["InvalidKeyError", "PrivateKey", "PublicKey"]
