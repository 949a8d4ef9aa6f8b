"""The on-disk key store: one private key per node, in `wg genkey` format (base64 + newline), mode 0600,
and beside it (`PATH.ed25519`, same format and mode) the Ed25519 seed the key is derived from.

The seed is the node's identity: with it the node proves it holds its key (keys.proof). It is created
first, then the key file is derived from it. Each file is created once (temp file, fsync, then a
no-clobber link into place) and never replaced: a file that does not parse is an error, left exactly as
it was, and a key file that is not the seed's derivation is refused. A key file without a seed (made by
`wg genkey` or an older meshd) still works, without a proof. No message ever contains a file's content.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from keys.proof import KeyProof, KeySeed
from keys.values import InvalidKeyError, PrivateKey, PublicKey
from meshd.errors import ConfigError

log = logging.getLogger(__name__)

KEY_MODE = 0o600
DIR_MODE = 0o700
MAX_KEY_FILE = 4096
"""A key file is 45 bytes; anything this large is not one, and is not read whole."""


SEED_SUFFIX = ".ed25519"
_S = TypeVar("_S", PrivateKey, KeySeed)


class KeyFileError(ConfigError):
    """The key file is missing, unreadable, unwritable or does not hold a key. Never names the content."""


@dataclass(frozen=True, slots=True)
class NodeKey:
    """The node's WireGuard private key and, unless it is a legacy key file, the seed it derives from."""

    private: PrivateKey
    seed: KeySeed | None  # None: a key without an identity; this node publishes no key proof

    def public_key(self) -> PublicKey:
        return self.private.public_key()

    def proof(self, name: str) -> KeyProof | None:
        """The proof, for the node called `name`, that it holds this key (None without a seed)."""
        return None if self.seed is None else self.seed.prove(name)


def seed_file(path: Path) -> Path:
    """Where the seed of the key file `path` lives."""
    return path.with_name(path.name + SEED_SUFFIX)


def _problem(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _parse(data: bytes, path: Path, kind: type[_S]) -> _S:
    what = "a WireGuard private key" if kind is PrivateKey else "an Ed25519 identity seed"
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {path} does not hold {what}: too large")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path} does not hold {what}: not text") from None
    try:
        return kind.from_base64(text)
    except InvalidKeyError as exc:
        raise KeyFileError(f"key file {path} does not hold {what}: {exc}") from None


def _read(path: Path, kind: type[_S], *, tighten: bool) -> _S:
    """Read and parse `path`. A valid key readable by others is tightened to 0600 when `tighten`."""
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE + 1)
        key = _parse(data, path, kind)
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            if not tighten:
                log.warning("key file %s has mode %04o: others can read it (expected 0600)", path, mode)
                return key
            try:
                os.fchmod(f.fileno(), KEY_MODE)
            except OSError as exc:
                log.warning(
                    "key file %s has mode %04o and cannot be tightened: %s", path, mode, _problem(exc)
                )
            else:
                log.warning("key file %s had mode %04o: others could read it; tightened to 0600", path, mode)
    return key


def load(path: Path) -> NodeKey:
    """The key in `path` and its seed. Missing, unreadable, not a key, or not the seed's: KeyFileError."""
    try:
        key = _read(path, PrivateKey, tighten=False)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist (create it with `meshd keys init`)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {_problem(exc)}") from None
    return NodeKey(key, _matching_seed(path, key, tighten=False))


def _load_seed(path: Path, *, tighten: bool) -> KeySeed | None:
    """The seed beside the key file `path`, or None when there is none."""
    seed_path = seed_file(path)
    try:
        return _read(seed_path, KeySeed, tighten=tighten)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {seed_path}: {_problem(exc)}") from None


def _matching_seed(path: Path, key: PrivateKey, *, tighten: bool) -> KeySeed | None:
    """The seed of `key`: None (logged) for a legacy key file, KeyFileError when it derives another key."""
    seed = _load_seed(path, tighten=tighten)
    if seed is None:
        log.warning(
            "key file %s has no identity seed (%s): this node publishes no key proof and cannot win a "
            "dispute over a copied public key; delete both files to get a new key with a seed",
            path,
            seed_file(path).name,
        )
    elif seed.wireguard_key() != key:
        raise KeyFileError(
            f"key file {path} is not the key derived from its identity seed {seed_file(path)} (one of them "
            f"was replaced): delete the seed to keep this key without a proof, or the key file to derive "
            f"it again from the seed"
        )
    return seed


def _make_parents(directory: Path) -> None:
    """Create missing directories up to `directory`, each with mode 0700 (unlike `mkdir -p`)."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)
            log.info("created directory %s (mode 0700) for the key file", d)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(text: str, path: Path) -> bool:
    """Put `text` at `path` unless a file is already there. True if ours was installed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, KEY_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(f"{text}\n".encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # unlike rename, never replaces a key another process just created
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if path.exists():  # no hard links on this filesystem: check, then rename
                return False
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _seed_or_create(path: Path) -> KeySeed:
    """The seed beside the key file `path`, created (before the key file) when there is none."""
    for _ in range(2):
        seed = _load_seed(path, tighten=True)
        if seed is not None:
            return seed
        seed = KeySeed.generate()
        if _install(seed.base64, seed_file(path)):
            log.info("generated a new identity seed in %s", seed_file(path))
            return seed
    raise KeyFileError(f"key file {seed_file(path)} keeps appearing and disappearing")


def load_or_create(path: Path) -> tuple[NodeKey, bool]:
    """The key in `path`, creating a new one (seed first) if the file does not exist. Returns (key, created)."""
    for _ in range(2):
        try:
            key = _read(path, PrivateKey, tighten=True)
        except (FileNotFoundError, NotADirectoryError):
            pass  # missing (a parent that is a file is reported by the attempt to create it)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {_problem(exc)}") from None
        else:
            return NodeKey(key, _matching_seed(path, key, tighten=True)), False
        try:
            _make_parents(path.parent)
            seed = _seed_or_create(path)
            if _install(seed.wireguard_key().base64, path):
                log.info("derived a new WireGuard private key from the identity seed into %s", path)
                return NodeKey(seed.wireguard_key(), seed), True
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {path}: {_problem(exc)}") from None
    raise KeyFileError(f"key file {path} keeps appearing and disappearing")
