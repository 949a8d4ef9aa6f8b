"""WireGuard key values. A PrivateKey never reveals itself through repr, str, format or pickling."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import ClassVar, NoReturn

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

KEY_LEN = 32
B64_LEN = 44


class InvalidKeyError(ValueError):
    """A key value that does not parse. The message never contains the offending value."""


def _decode_b64_key(text: str, what: str) -> bytes:
    """The 32 bytes of a key written as `wg` writes it: exactly 44 characters of canonical standard
    base64 (`b64encode(raw) == text`: no whitespace, `=` padding, zero unused bits), like `wg pubkey`."""
    if not isinstance(text, str) or len(text) != B64_LEN:
        got = f"{len(text)} characters" if isinstance(text, str) else f"a {type(text).__name__}"
        raise InvalidKeyError(f"{what} must be {B64_LEN} characters of standard base64, got {got}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyError(f"{what} is not valid standard base64") from None
    if len(raw) != KEY_LEN:
        raise InvalidKeyError(f"{what} must decode to {KEY_LEN} bytes, got {len(raw)}")
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidKeyError(
            f"{what} is not canonical base64 (padding or unused bits differ from what wg writes)"
        )
    return raw


class _KeyText:
    """The two text forms of a key's 32 bytes (`_bytes()`): base64 as `wg` writes keys, hex as UAPI wants."""

    __slots__ = ()

    def _bytes(self) -> bytes:
        raise NotImplementedError

    @property
    def base64(self) -> str:
        return base64.b64encode(self._bytes()).decode("ascii")

    @property
    def hex(self) -> str:
        return self._bytes().hex()


@dataclass(frozen=True, slots=True, order=True)
class PublicKey(_KeyText):
    """A WireGuard (X25519) public key: 32 raw bytes, shown as standard base64."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_LEN:
            raise InvalidKeyError(f"public key must be {KEY_LEN} bytes")

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        return cls(_decode_b64_key(text, "public key"))

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise InvalidKeyError("public key is not valid hex") from None

    def _bytes(self) -> bytes:
        return self.raw

    @property
    def short(self) -> str:
        """First 8 base64 characters: enough to tell peers apart in logs."""
        return self.base64[:8]

    def __str__(self) -> str:
        return self.base64

    def __repr__(self) -> str:
        return f"PublicKey({self.base64!r})"


class _Secret(_KeyText):
    """32 secret bytes. The value leaves only through `base64`/`hex` (for its file and the backend), never
    through repr, str, format, comparison errors or pickling."""

    __slots__ = ("_raw",)
    _raw: bytes
    _what: ClassVar[str] = "secret"

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != KEY_LEN:
            raise InvalidKeyError(f"{self._what} must be {KEY_LEN} bytes")
        object.__setattr__(self, "_raw", raw)

    def _bytes(self) -> bytes:
        return self._raw

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, _Secret) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled")


def _strip_file_text(text: str) -> str:
    """A key file as `wg` reads it: canonical base64 at the start, then nothing but whitespace (the
    newline `wg genkey` writes, a CRLF, a trailing blank line). Anything else is refused."""
    return text.rstrip(" \t\r\n\v\f") if isinstance(text, str) else text


class PrivateKey(_Secret):
    """A WireGuard private key. Its value leaves only through `base64`/`hex`, for the key file and UAPI."""

    __slots__ = ()
    _what = "private key"

    @classmethod
    def generate(cls) -> PrivateKey:
        raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(raw)

    @classmethod
    def from_base64(cls, text: str) -> PrivateKey:
        """A key file's text (see `_strip_file_text`)."""
        return cls(_decode_b64_key(_strip_file_text(text), cls._what))

    def public_key(self) -> PublicKey:
        priv = X25519PrivateKey.from_private_bytes(self._raw)
        return PublicKey(priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
