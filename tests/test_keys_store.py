"""keys.store: the node's key file is created once, 0600, in `wg genkey` format, and never replaced."""

from __future__ import annotations

import base64
import errno
import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from keys.proof import KeySeed
from keys.store import KeyFileError, load, load_or_create, seed_file
from keys.values import InvalidKeyError, PrivateKey, PublicKey
from meshd.errors import ConfigError

NEAR_VALID = PrivateKey(bytes(range(1, 33))).base64
"""A real key's text: garbage cases are built from it, so a leak of any of it would show."""

GARBAGE = {
    "empty": b"",
    "whitespace": b"\n \n",
    "43-chars": NEAR_VALID[:43].encode() + b"\n",
    "bad-base64": (NEAR_VALID[:20] + "*" + NEAR_VALID[21:] + "\n").encode(),
    "33-bytes-decoded": base64.b64encode(bytes(range(1, 34))) + b"\n",
    "binary-junk": bytes(range(255, 191, -1)),
    "two-keys": f"{NEAR_VALID}\n{NEAR_VALID}\n".encode(),
    # `wg pubkey` refuses these too: non-canonical base64 decodes to the same 32 bytes but is not a key
    # `wg` accepts (the last character's unused bits are set), and nothing may come before the key.
    "non-canonical": (NEAR_VALID[:42] + "B=\n").encode(),
    "double-padding": (NEAR_VALID[:42] + "==\n").encode(),
    "leading-space": f" {NEAR_VALID}\n".encode(),
    "newline-first": f"\n{NEAR_VALID}".encode(),
}
assert NEAR_VALID[42] == "A"  # so that "B" above only sets unused bits


def wg_pubkey(path: Path) -> str:
    with path.open("rb") as f:
        return subprocess.run(["wg", "pubkey"], stdin=f, capture_output=True, check=True, text=True).stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_no_secret(text: str, secret: str) -> None:
    assert secret[:12] not in text
    assert secret[-16:] not in text


def test_creates_key_file_that_wg_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "a" / "b" / "private.key"
    caplog.set_level(logging.DEBUG)

    key, created = load_or_create(path)

    assert created
    text = path.read_text()
    assert text == key.private.base64 + "\n"
    assert wg_pubkey(path) == key.public_key().base64 + "\n"
    assert mode(path) == 0o600
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b")) == (0o700, 0o700)
    assert sorted(os.listdir(path.parent)) == ["private.key", "private.key.ed25519"]
    assert_no_secret(caplog.text, text.strip())
    assert_no_secret(caplog.text, seed_file(path).read_text().strip())


def test_existing_key_is_loaded_and_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    first, _ = load_or_create(path)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino)

    again, created = load_or_create(path)

    assert (again, created) == (first, False)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before
    assert load(path) == first


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o666], ids=oct)
def test_looser_permissions_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, loose: int
) -> None:
    path = tmp_path / "private.key"
    key = PrivateKey.generate()
    path.write_text(key.base64 + "\n")
    os.chmod(path, loose)

    loaded, created = load_or_create(path)

    assert (loaded.private, loaded.seed, created) == (key, None, False)
    assert mode(path) == 0o600
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "mode" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and f"{loose:04o}" in warnings[0]
    assert_no_secret(caplog.text, key.base64)


def test_load_warns_about_loose_permissions_but_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "private.key"
    key = PrivateKey.generate()
    path.write_text(key.base64 + "\n")
    os.chmod(path, 0o644)

    assert load(path).private == key
    assert mode(path) == 0o644
    assert any(str(path) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("fn", [load, load_or_create], ids=["load", "load_or_create"])
def test_garbage_is_an_error_and_left_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, fn: object
) -> None:
    path = tmp_path / "private.key"
    path.write_bytes(content)
    os.chmod(path, 0o644)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns, mode(path))

    with pytest.raises(KeyFileError) as err:
        fn(path)  # type: ignore[operator]

    message = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert "\n" not in message and str(path) in message
    assert (path.read_bytes(), os.stat(path).st_mtime_ns, mode(path)) == before
    assert os.listdir(tmp_path) == ["private.key"]
    for text in (message, repr(err.value), caplog.text):
        assert_no_secret(text, NEAR_VALID)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "Is a directory"),
        (lambda p: p.parent.joinpath("file").write_text("x"), "Not a directory"),
    ],
    ids=["missing", "directory", "under-a-file"],
)
def test_load_unusable_path(tmp_path: Path, make: object, problem: str) -> None:
    path = tmp_path / "private.key"
    make(path)  # type: ignore[operator]
    if problem == "Not a directory":
        path = tmp_path / "file" / "private.key"

    with pytest.raises(KeyFileError, match=problem) as err:
        load(path)

    assert str(path) in str(err.value)


def test_create_under_a_regular_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")

    with pytest.raises(KeyFileError, match=r"cannot create key file .*: Not a directory"):
        load_or_create(tmp_path / "file" / "sub" / "private.key")

    assert os.listdir(tmp_path) == ["file"]


def test_failed_write_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)

    with pytest.raises(KeyFileError, match="Input/output error"):
        load_or_create(tmp_path / "private.key")

    assert os.listdir(tmp_path) == []


def test_a_key_created_concurrently_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the file between our check and our write: its key wins, ours is dropped."""
    path = tmp_path / "private.key"
    theirs = PrivateKey.generate()
    real_generate = KeySeed.generate

    def racing_generate() -> KeySeed:
        path.write_text(theirs.base64 + "\n")
        os.chmod(path, 0o600)
        return real_generate()

    monkeypatch.setattr(KeySeed, "generate", staticmethod(racing_generate))

    with pytest.raises(KeyFileError, match="not the key derived from its identity seed"):
        load_or_create(path)  # our seed went in first: their key is not its derivation, so we refuse

    assert path.read_text() == theirs.base64 + "\n"
    assert sorted(os.listdir(tmp_path)) == ["private.key", "private.key.ed25519"]


@pytest.mark.parametrize(
    "text",
    [NEAR_VALID + "\n", NEAR_VALID, NEAR_VALID + "\r\n", NEAR_VALID + " \n", NEAR_VALID + "\n\n"],
    ids=["wg-genkey-output", "no-newline", "crlf", "trailing-space", "trailing-blank-line"],
)
def test_key_file_is_the_key_then_only_whitespace_like_wg_reads_it(tmp_path: Path, text: str) -> None:
    """An identity file edited on another system must not make the node's agent crash-loop."""
    path = tmp_path / "private.key"
    path.write_text(text)
    os.chmod(path, 0o600)

    assert load(path).private == PrivateKey(bytes(range(1, 33)))


PUBLIC = PrivateKey(bytes(range(1, 33))).public_key().base64
KEY_TEXT_GARBAGE = {
    "surrounding-spaces": f" {PUBLIC} ",
    "non-canonical": PUBLIC[:42] + "x=",  # PUBLIC[42] is "w": "x" sets an unused bit
    "url-safe-alphabet": PUBLIC.replace("/", "_"),
    "no-padding": PUBLIC[:43],
    "unicode": PUBLIC[:43] + "\u00bd",
}
assert PUBLIC[42] == "w" and "/" in PUBLIC


@pytest.mark.parametrize("text", KEY_TEXT_GARBAGE.values(), ids=KEY_TEXT_GARBAGE.keys())
@pytest.mark.parametrize("cls", [PublicKey, PrivateKey], ids=["public", "private"])
def test_key_text_must_be_canonical_base64(cls: type[PublicKey | PrivateKey], text: str) -> None:
    with pytest.raises(InvalidKeyError) as err:
        cls.from_base64(text)
    assert_no_secret(str(err.value), PUBLIC)


def test_only_a_private_key_may_end_with_whitespace() -> None:
    """The key file format (what `wg genkey` writes); a public key annotation holds the key alone."""
    assert PrivateKey.from_base64(PUBLIC + "\n\n") == PrivateKey.from_base64(PUBLIC)
    for tail in ("\n", " ", "\n\n"):
        with pytest.raises(InvalidKeyError):
            PublicKey.from_base64(PUBLIC + tail)


def test_canonical_keys_round_trip() -> None:
    for raw in (bytes(32), bytes([255]) * 32, bytes(range(1, 33))):
        text = base64.b64encode(raw).decode()
        assert PublicKey.from_base64(text).raw == raw
        assert PrivateKey.from_base64(text).base64 == text
