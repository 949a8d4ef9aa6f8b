"""The next key of a rotation on disk (keys.rotation): created like the first key, committed by renames,
and whatever moment an agent dies at, `recover` finishes or rolls back to a key file that loads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keys.rotation import commit_next, discard_next, next_file, prepare_next, recover
from keys.store import load, load_or_create, seed_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_prepare_commit(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    old, _ = load_or_create(path)
    new = prepare_next(path)
    assert new.public_key() != old.public_key()
    assert load(path).public_key() == old.public_key(), "the next key is not in use before the commit"
    assert _mode(next_file(path)) == 0o600 and _mode(seed_file(next_file(path))) == 0o600
    assert prepare_next(path).public_key() == new.public_key(), "prepared once, then reused"
    commit_next(path)
    loaded = load(path)
    assert loaded.public_key() == new.public_key() and loaded.seed is not None
    assert loaded.proof("n1") is not None and loaded.proof("n1") == new.proof("n1")
    assert _mode(path) == 0o600 and _mode(seed_file(path)) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.key", "private.key.ed25519"]
    assert recover(path) is None


def test_recover_rolls_back_before_the_switch(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    old, _ = load_or_create(path)
    prepare_next(path)
    assert recover(path) == "rolled back"
    assert load(path).public_key() == old.public_key()
    assert not next_file(path).exists() and not seed_file(next_file(path)).exists()


def test_recover_rolls_back_a_half_created_next_key(tmp_path: Path) -> None:
    """Killed after the next seed was written but before its key: only the seed is there."""
    path = tmp_path / "private.key"
    old, _ = load_or_create(path)
    prepare_next(path)
    next_file(path).unlink()
    assert recover(path) == "rolled back"
    assert load(path).public_key() == old.public_key()


def test_recover_finishes_a_half_done_commit(tmp_path: Path) -> None:
    """Killed between the two renames: the seed is the new one, the key file still the old one."""
    path = tmp_path / "private.key"
    load_or_create(path)
    new = prepare_next(path)
    os.replace(seed_file(next_file(path)), seed_file(path))
    assert recover(path) == "finished"
    assert load(path).public_key() == new.public_key()  # key and seed agree again


def test_discard(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    old, _ = load_or_create(path)
    prepare_next(path)
    discard_next(path)
    discard_next(path)  # idempotent
    assert load(path).public_key() == old.public_key()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.key", "private.key.ed25519"]


def test_commit_twice_is_harmless(tmp_path: Path) -> None:
    """A pass that failed after the commit takes the step again."""
    path = tmp_path / "private.key"
    load_or_create(path)
    new = prepare_next(path)
    commit_next(path)
    commit_next(path)
    assert load(path).public_key() == new.public_key()
