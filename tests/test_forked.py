"""meshd commands forked from the warm server (meshd/demo/forked.py) behave as `python -m meshd` does: exit
codes, separate stdout and stderr, the caller's environment as it is now, nothing of the server's own
descriptors handed on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshd.demo import forked


def test_exit_code_and_output_match_a_cold_start(tmp_path: Path) -> None:
    argv = ["status", "--run-dir", str(tmp_path / "nowhere")]
    cold = subprocess.run([sys.executable, "-m", "meshd", *argv], capture_output=True, text=True, check=False)
    code, out, err = forked.run(None, argv, tmp_path / "log", timeout=60)
    assert (code, out, err) == (cold.returncode, cold.stdout, cold.stderr)
    assert code != 0 and "nowhere" in err


def test_the_environment_is_the_callers_at_each_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forked.run(None, ["--help"], tmp_path / "first", timeout=60)  # the server runs from here on
    monkeypatch.setenv("MESHD_RUN_DIR", str(tmp_path / "from-env"))
    code, _, err = forked.run(None, ["status"], tmp_path / "log", timeout=60)
    assert code != 0 and "from-env" in err


def test_nothing_of_the_fork_server_is_handed_on() -> None:
    """What a forked command starts (wireguard-go) must not hold the fork server's pipes open."""
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        forked.drop_inherited()
        assert not os.get_inheritable(r) and not os.get_inheritable(w)
    finally:
        os.close(r)
        os.close(w)
