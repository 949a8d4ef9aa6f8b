"""The next key of a rotation on disk, beside the key file `PATH`: `PATH.next` and its seed
`PATH.next.ed25519`, created like the first key (seed first, 0600, temp file + fsync + no-clobber link).

Commit replaces the seed, then the key (each an atomic rename over the old file, which is gone with it);
discard removes the key, then the seed. So whatever moment an agent dies at, `recover` at the next start
finds one of three states: a next seed (not committed: roll back), a next key without its seed (the commit
was half done: finish it), or nothing. No message contains a key.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from keys.store import KeyFileError, NodeKey, _fsync_dir, load_or_create, seed_file

log = logging.getLogger(__name__)
NEXT_SUFFIX = ".next"


def next_file(path: Path) -> Path:
    """Where the next key of the key file `path` waits (its seed: `seed_file(next_file(path))`)."""
    return path.with_name(path.name + NEXT_SUFFIX)


def prepare_next(path: Path) -> NodeKey:
    """The next key (created when missing), not yet in use."""
    key, _ = load_or_create(next_file(path))
    return key


def commit_next(path: Path) -> None:
    """Make the next key the key: seed first, then key (see `recover`). Nothing to commit: no-op."""
    nxt = next_file(path)
    if not nxt.exists():
        return
    try:
        if seed_file(nxt).exists():
            os.replace(seed_file(nxt), seed_file(path))
        os.replace(nxt, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot commit the next key {nxt} to {path}: {exc.strerror}") from None


def discard_next(path: Path) -> None:
    """Remove the next key: key first, then seed (see `recover`)."""
    nxt = next_file(path)
    for f in (nxt, seed_file(nxt)):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)


def recover(path: Path) -> str | None:
    """Finish or roll back a rotation an earlier agent left on disk. Returns what was done, or None."""
    nxt = next_file(path)
    if seed_file(nxt).exists():
        discard_next(path)
        log.warning("key rotation was interrupted before its switch: rolled back to the current key")
        return "rolled back"
    if nxt.exists():
        commit_next(path)
        log.warning("key rotation was interrupted during its switch: finished (the next key is the key)")
        return "finished"
    return None
