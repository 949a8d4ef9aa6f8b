"""keys.store and the identity seed: created first, beside the key file (`PATH.ed25519`, 0600, `wg genkey`
format); a key file is checked against its seed; a key file without one (legacy) works without a proof."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from keys.proof import KeySeed
from keys.store import KeyFileError, load, load_or_create, seed_file
from keys.values import PrivateKey


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def wg_pubkey(path: Path) -> str:
    with path.open("rb") as f:
        return subprocess.run(
            ["wg", "pubkey"], stdin=f, capture_output=True, check=True, text=True
        ).stdout.strip()


def test_a_new_key_derives_from_a_new_seed_and_proves_itself(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    key, created = load_or_create(path)
    seed = KeySeed.from_base64(seed_file(path).read_text())
    assert created and key.seed == seed and key.private == seed.wireguard_key()
    assert wg_pubkey(path) == key.public_key().base64, "the key file stays what wg reads"
    assert mode(seed_file(path)) == 0o600
    proof = key.proof("node-v")
    assert proof is not None and proof.proves("node-v", key.public_key())
    assert load(path) == key


def test_a_seed_without_its_key_file_gets_the_key_derived_again(tmp_path: Path) -> None:
    """A crash after the seed was written and before the key file: the next start repairs it."""
    path = tmp_path / "private.key"
    seed = KeySeed.generate()
    seed_file(path).write_text(seed.base64 + "\n")
    os.chmod(seed_file(path), 0o600)
    key, created = load_or_create(path)
    assert created and key.seed == seed and key.private == seed.wireguard_key()
    assert seed_file(path).read_text() == seed.base64 + "\n"


@pytest.mark.parametrize("fn", [load, load_or_create], ids=["load", "load_or_create"])
def test_a_key_file_that_is_not_its_seeds_derivation_is_refused_and_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fn: object
) -> None:
    path = tmp_path / "private.key"
    load_or_create(path)
    other = PrivateKey.generate()
    path.write_text(other.base64 + "\n")  # an operator ran `wg genkey > private.key`
    before = (path.read_bytes(), seed_file(path).read_bytes())
    with pytest.raises(KeyFileError, match="not the key derived from its identity seed") as err:
        fn(path)  # type: ignore[operator]
    assert str(path) in str(err.value) and str(seed_file(path)) in str(err.value)
    assert (path.read_bytes(), seed_file(path).read_bytes()) == before
    for secret in (other.base64, seed_file(path).read_text().strip()):
        assert secret[:12] not in str(err.value) + caplog.text


def test_a_legacy_key_file_works_without_a_proof_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "private.key"
    legacy = PrivateKey.generate()
    path.write_text(legacy.base64 + "\n")
    os.chmod(path, 0o600)
    caplog.set_level(logging.INFO)
    key, created = load_or_create(path)
    assert (key.private, key.seed, created, key.proof("n")) == (legacy, None, False, None)
    assert not seed_file(path).exists(), "a legacy key gets no seed: it could not be its derivation"
    said = [r.getMessage() for r in caplog.records if "no identity seed" in r.getMessage()]
    assert len(said) == 1 and "cannot win" in said[0] and "delete both files" in said[0]
    assert legacy.base64[:12] not in caplog.text


def test_a_garbage_seed_is_an_error_that_names_the_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    load_or_create(path)
    seed_text = seed_file(path).read_text()
    seed_file(path).write_text(seed_text[:20] + "*" + seed_text[21:])
    with pytest.raises(KeyFileError, match="identity seed") as err:
        load_or_create(path)
    assert str(seed_file(path)) in str(err.value) and seed_text[:12] not in str(err.value)


def test_a_loose_seed_file_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "private.key"
    load_or_create(path)
    os.chmod(seed_file(path), 0o644)
    load_or_create(path)
    assert mode(seed_file(path)) == 0o600
    assert any(str(seed_file(path)) in r.getMessage() for r in caplog.records)
