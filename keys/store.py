"""The on-disk key store: one private key per node, in `wg genkey` format (base64 + newline), mode 0600.

A node's key file is its identity. It is created once (temp file, fsync, then a no-clobber link into
place) and never replaced: a file that does not parse is an error, left exactly as it was. No message
ever contains the file's content.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from pathlib import Path

from keys.values import InvalidKeyError, PrivateKey
from meshd.errors import ConfigError

log = logging.getLogger(__name__)

KEY_MODE = 0o600
DIR_MODE = 0o700
MAX_KEY_FILE = 4096
"""A key file is 45 bytes; anything this large is not one, and is not read whole."""


class KeyFileError(ConfigError):
    """The key file is missing, unreadable, unwritable or does not hold a key. Never names the content."""


def _problem(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _parse(data: bytes, path: Path) -> PrivateKey:
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {path} does not hold a WireGuard private key: too large")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path} does not hold a WireGuard private key: not text") from None
    try:
        return PrivateKey.from_base64(text)
    except InvalidKeyError as exc:
        raise KeyFileError(f"key file {path} does not hold a WireGuard private key: {exc}") from None


def _read(path: Path, *, tighten: bool) -> PrivateKey:
    """Read and parse `path`. A valid key readable by others is tightened to 0600 when `tighten`."""
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE + 1)
        key = _parse(data, path)
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


def load(path: Path) -> PrivateKey:
    """The private key in `path`. Missing, unreadable or not a key: KeyFileError."""
    try:
        return _read(path, tighten=False)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist (create it with `meshd keys init`)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {_problem(exc)}") from None


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


def _install(key: PrivateKey, path: Path) -> bool:
    """Put `key` at `path` unless a file is already there. True if ours was installed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, KEY_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(f"{key.base64}\n".encode("ascii"))
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


def load_or_create(path: Path) -> tuple[PrivateKey, bool]:
    """The key in `path`, creating a new one if the file does not exist. Returns (key, created)."""
    for _ in range(2):
        try:
            return _read(path, tighten=True), False
        except (FileNotFoundError, NotADirectoryError):
            pass  # missing (a parent that is a file is reported by the attempt to create it)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {_problem(exc)}") from None
        key = PrivateKey.generate()
        try:
            _make_parents(path.parent)
            if _install(key, path):
                log.info("generated a new WireGuard private key in %s", path)
                return key, True
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {path}: {_problem(exc)}") from None
    raise KeyFileError(f"key file {path} keeps appearing and disappearing")
