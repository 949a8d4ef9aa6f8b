"""The wireguard-go UAPI text protocol: encode `set=1` requests, parse `get=1` replies. Pure, no I/O.

Every value is validated before a request is encoded, because `set` is not atomic: lines before a bad
one are already applied. `replace_peers` is never emitted; peers change one at a time, and
`replace_allowed_ips` is only sent for the peer whose list is being set.
"""

from __future__ import annotations

import errno as errno_mod
import os
import re
from collections.abc import Iterable, Sequence

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.state import PeerSpec
from meshd.errors import InvalidValueError, PermanentError
from overlay.wireguard import check_listen_port, check_peer, check_public_key, check_update

GET_REQUEST = "get=1\n\n"


class UapiError(PermanentError):
    """wireguard-go refused an operation (`errno=N` with N != 0). Never contains a private key."""

    def __init__(self, operation: str, errno: int) -> None:
        code = abs(errno)
        name = errno_mod.errorcode.get(code, "?")
        super().__init__(f"{operation}: wireguard-go replied errno={errno} ({name}: {os.strerror(code)})")
        self.operation = operation
        self.errno = errno


class UapiProtocolError(PermanentError):
    """A reply that does not follow the UAPI protocol."""


# --- encoding ---------------------------------------------------------------------------------------


def _check_line(line: str) -> None:
    """One `key=value` line: no control character (it would end the line or the request early and
    smuggle in other settings) and no `%` zone ID (a scope is local to one host, wireguard-go cannot
    use it). Raised before anything is sent, since `set` applies the lines before a bad one."""
    key, _, value = line.partition("=")
    shown = "(not shown)" if key in ("private_key", "preshared_key") else repr(value[:80])
    bad = next((c for c in line if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidValueError(f"UAPI value for {key!r} contains control character {bad!r}: {shown}")
    if "%" in value:
        raise InvalidValueError(f"UAPI value for {key!r} has a '%' zone ID, which peers cannot use: {shown}")


_SUSPECT = re.compile(r"[\x00-\x1f\x7f%]")
"""What `_check_line` may refuse: searched for in all lines at once (a request can hold thousands)."""


def _request(lines: Iterable[str]) -> str:
    checked = list(lines)
    if _SUSPECT.search("".join(checked)):  # rare: find the line and say what is wrong with it
        for line in checked:
            _check_line(line)
    return "set=1\n" + "".join(f"{line}\n" for line in checked) + "\n"


def encode_device(*, private_key: PrivateKey | None = None, listen_port: int | None = None) -> str:
    """Device-level settings only; peers are left as they are."""
    lines = []
    if private_key is not None:
        if not isinstance(private_key, PrivateKey):
            raise InvalidValueError("private key must be a PrivateKey")
        lines.append(f"private_key={private_key.hex}")
    if listen_port is not None:
        check_listen_port(listen_port)
        lines.append(f"listen_port={listen_port}")
    return _request(lines)


def _add_peer_lines(peer: PeerSpec) -> list[str]:
    nets = check_peer(peer)
    lines = [f"public_key={peer.public_key.hex}"]
    if peer.endpoint is not None:
        lines.append(f"endpoint={peer.endpoint}")
    lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
    lines.append("replace_allowed_ips=true")
    lines.extend(f"allowed_ip={net}" for net in nets)
    return lines


def _update_peer_lines(change: UpdatePeer) -> list[str]:
    nets = check_update(change)
    lines = [f"public_key={change.public_key.hex}", "update_only=true"]
    if change.endpoint is not None:
        lines.append(f"endpoint={change.endpoint}")
    if change.persistent_keepalive is not None:
        lines.append(f"persistent_keepalive_interval={change.persistent_keepalive}")
    if nets is not None:
        lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={net}" for net in nets)
    return lines


def _remove_peer_lines(public_key: PublicKey) -> list[str]:
    check_public_key(public_key)
    return [f"public_key={public_key.hex}", "remove=true"]


PSK_SIZE = 32


def encode_preshared_keys(changes: Sequence[tuple[PublicKey, bytes | None]]) -> str:
    """Set (None: clear, all zeros) the preshared keys of existing peers (`update_only`), nothing else."""
    lines: list[str] = []
    for public_key, psk in changes:
        check_public_key(public_key)
        if psk is not None and (not isinstance(psk, bytes) or len(psk) != PSK_SIZE):
            raise InvalidValueError(f"a preshared key must be {PSK_SIZE} bytes")
        value = (psk or bytes(PSK_SIZE)).hex()
        lines += [f"public_key={public_key.hex}", "update_only=true", f"preshared_key={value}"]
    return _request(lines)


def encode_add_peer(peer: PeerSpec) -> str:
    """Create the peer or bring an existing one to exactly this spec (upsert). An endpoint of None is
    not sent, so one the peer learned by roaming stays."""
    return _request(_add_peer_lines(peer))


def encode_update_peer(change: UpdatePeer) -> str:
    """Change only the given fields of an existing peer (`update_only`: never creates one)."""
    return _request(_update_peer_lines(change))


def encode_remove_peer(public_key: PublicKey) -> str:
    return _request(_remove_peer_lines(public_key))


def encode_peer_changes(changes: Sequence[AddPeer | UpdatePeer | RemovePeer]) -> str:
    """Several per-peer changes in one `set` (each peer section as above, never `replace_peers`).
    Everything is validated before anything is encoded: `set` is not atomic."""
    lines: list[str] = []
    for change in changes:
        match change:
            case AddPeer(peer):
                lines += _add_peer_lines(peer)
            case UpdatePeer():
                lines += _update_peer_lines(change)
            case RemovePeer(key):
                lines += _remove_peer_lines(key)
    return _request(lines)


# --- parsing ----------------------------------------------------------------------------------------


def pairs_of(reply: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(reply.split("\n"), start=1):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            # The line itself may be a key: never echo it.
            raise UapiProtocolError(f"malformed UAPI reply line {number} (no '=')")
        pairs.append((key, value))
    return pairs


def reply_errno(reply: str) -> int:
    """The `errno=N` that ends every reply."""
    return errno_of(pairs_of(reply))


def errno_of(pairs: Sequence[tuple[str, str]]) -> int:
    for key, value in reversed(pairs):
        if key == "errno":
            try:
                return int(value)
            except ValueError:
                raise UapiProtocolError(f"UAPI errno {value!r} is not a number") from None
    raise UapiProtocolError("UAPI reply has no errno line")


def check_reply(reply: str, operation: str) -> None:
    """Raise UapiError naming `operation` when the reply carries a non-zero errno."""
    code = reply_errno(reply)
    if code != 0:
        raise UapiError(operation, code)
