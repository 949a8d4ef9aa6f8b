"""`meshd keys init|pubkey`, run as a user would: the console script and `python -m meshd`, as processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meshd.cli import keys as cmd_keys
from meshd.cli import main as cli
from tests.test_keys_store import GARBAGE, NEAR_VALID, assert_no_secret, wg_pubkey

REPO = Path(__file__).resolve().parent.parent
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(
    params=[[str(REPO / ".venv" / "bin" / "meshd")], [sys.executable, "-m", "meshd"]],
    ids=["console-script", "python-m"],
)
def meshd(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHD_")}

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*request.param, *args],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**clean_env, **(env or {})},
            timeout=60,
        )

    return run


def wg_genkey(path: Path, *, mode: int = 0o600) -> str:
    text = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    path.write_text(text)
    os.chmod(path, mode)
    return text.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_creates_the_key_and_prints_what_wg_derives(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "state" / "meshd" / "private.key"

    res = meshd("keys", "init", "--key-file", str(path))

    assert res.returncode == 0, res.stderr
    assert res.stdout == wg_pubkey(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert sorted(os.listdir(path.parent)) == ["private.key", "private.key.ed25519"]
    assert mode(path.parent / "private.key.ed25519") == 0o600
    for secret in (path.read_text().strip(), (path.parent / "private.key.ed25519").read_text().strip()):
        assert_no_secret(res.stdout + res.stderr, secret)


def test_init_twice_prints_the_same_key_and_keeps_the_file(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    first = meshd("keys", "init", "--key-file", str(path))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)

    second = meshd("keys", "init", "--key-file", str(path))

    assert (first.returncode, second.returncode) == (0, 0)
    assert second.stdout == first.stdout
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert_no_secret(first.stdout + first.stderr + second.stdout + second.stderr, path.read_text().strip())


def test_pubkey_of_a_wg_genkey_file(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    secret = wg_genkey(path)

    res = meshd("keys", "pubkey", "--key-file", str(path))

    assert (res.returncode, res.stdout) == (0, wg_pubkey(path))
    assert_no_secret(res.stdout + res.stderr, secret)


def test_key_file_from_the_environment(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "env.key"
    secret = wg_genkey(path)

    res = meshd("keys", "pubkey", env={"MESHD_KEY_FILE": str(path)})

    assert (res.returncode, res.stdout) == (0, wg_pubkey(path))
    assert_no_secret(res.stdout + res.stderr, secret)


def test_init_tightens_loose_permissions_and_logs_it(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "private.key"
    secret = wg_genkey(path, mode=0o644)

    res = meshd("--log-format", "json", "keys", "init", "--key-file", str(path))

    assert (res.returncode, res.stdout) == (0, wg_pubkey(path))
    assert mode(path) == 0o600
    records = [json.loads(line) for line in res.stderr.splitlines()]
    warnings = [r for r in records if r["level"] == "WARNING" and "mode" in r["msg"]]
    assert len(warnings) == 1 and str(path) in warnings[0]["msg"] and "0644" in warnings[0]["msg"]
    assert any("no identity seed" in r["msg"] for r in records), "a legacy key file says it has no proof"
    assert {"ts", "level", "logger", "msg"} <= warnings[0].keys()
    assert_no_secret(res.stdout + res.stderr, secret)


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("command", ["init", "pubkey"])
def test_garbage_key_file_exits_2_and_is_left_alone(
    meshd: Run, tmp_path: Path, command: str, content: bytes
) -> None:
    path = tmp_path / "private.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)

    res = meshd("keys", command, "--key-file", str(path))

    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshd: error: key file ") and str(path) in lines[0]
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert os.listdir(tmp_path) == ["private.key"]
    assert_no_secret(res.stderr, NEAR_VALID)


# (file content, meshd accepts it, `wg pubkey` accepts it): meshd accepts exactly the files wg accepts
# (the key at the start, then only whitespace).
VALID = NEAR_VALID
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WG_TABLE = {
    "wg-genkey-output": (VALID + "\n", True, True),
    "no-newline": (VALID, True, True),
    "all-ones-key": ("/" * 42 + "8=\n", True, True),
    "non-canonical-unused-bits": (VALID[:42] + ALPHABET[ALPHABET.index(VALID[42]) | 1] + "=\n", False, False),
    "double-padding": (VALID[:42] + "==\n", False, False),
    "no-padding": (VALID[:43] + "A\n", False, False),
    "url-safe-alphabet": ("_" * 42 + "8=\n", False, False),
    "leading-space": (" " + VALID + "\n", False, False),
    "newline-first": ("\n" + VALID, False, False),
    "trailing-space": (VALID + " \n", True, True),
    "two-newlines": (VALID + "\n\n", True, True),
    "crlf": (VALID + "\r\n", True, True),
    "trailing-tab": (VALID + "\t", True, True),
}


@pytest.mark.parametrize(("content", "ours", "wg"), WG_TABLE.values(), ids=WG_TABLE.keys())
def test_pubkey_accepts_no_file_that_wg_pubkey_refuses(
    meshd: Run, tmp_path: Path, content: str, ours: bool, wg: bool
) -> None:
    path = tmp_path / "private.key"
    path.write_text(content, newline="")
    os.chmod(path, 0o600)
    real = subprocess.run(["wg", "pubkey"], input=content, capture_output=True, text=True, check=False)

    res = meshd("keys", "pubkey", "--key-file", str(path))

    assert (real.returncode == 0, res.returncode == 0) == (wg, ours), (real.stderr, res.stderr)
    if ours:
        assert res.stdout == real.stdout
    else:
        assert (res.returncode, res.stdout) == (2, "")
        assert_no_secret(res.stderr, content.strip() or VALID)


def test_pubkey_of_a_missing_file_exits_2_and_creates_nothing(meshd: Run, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "private.key"

    res = meshd("keys", "pubkey", "--key-file", str(path))

    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr.splitlines() == [
        f"meshd: error: key file {path} does not exist (create it with `meshd keys init`)"
    ]
    assert not path.parent.exists()


def test_init_under_a_regular_file_exits_2_with_the_reason(meshd: Run, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\n")
    path = tmp_path / "file" / "sub" / "private.key"

    res = meshd("keys", "init", "--key-file", str(path))

    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr.splitlines() == [f"meshd: error: cannot create key file {path}: Not a directory"]


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("keys",),
        ("keys", "rotate"),
        ("--log-format", "xml", "keys", "init"),
        ("--log-level", "LOUD", "keys"),
    ],
    ids=["no-command", "keys-alone", "unknown-subcommand", "bad-log-format", "bad-log-level"],
)
def test_usage_errors_exit_2(meshd: Run, args: tuple[str, ...]) -> None:
    res = meshd(*args)

    assert res.returncode == 2
    assert res.stdout == ""
    assert "usage: meshd" in res.stderr or res.stderr.startswith("meshd: error:")


def test_concurrent_inits_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k" / "private.key"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "meshd", "keys", "init", "--key-file", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(p.communicate(timeout=60), p.returncode) for p in procs]

    assert {code for _, code in results} == {0}
    assert {out for (out, _), _ in results} == {wg_pubkey(path)}
    assert sorted(os.listdir(path.parent)) == ["private.key", "private.key.ed25519"]


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (RuntimeError("disk\non fire"), 1, "meshd: RuntimeError: disk on fire"),
        (KeyboardInterrupt(), 130, "meshd: interrupted"),
    ],
    ids=["unexpected-error", "ctrl-c"],
)
def test_other_failures_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    code: int,
    line: str,
) -> None:
    def failing_load(path: Path) -> None:
        raise exc

    monkeypatch.setattr(cmd_keys, "load", failing_load)
    monkeypatch.setattr(cli, "setup_logging", lambda **_: None)

    assert cli.main(["keys", "pubkey", "--key-file", "/nonexistent"]) == code
    assert capsys.readouterr().err.splitlines() == [line]
