"""scripts/apiserver itself: `up` into a namespace it is given, `down`, a refused `up`, an interrupted `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from meshd.demo.netlab import Lab
from tests.realapi.procs import STATE, State, alive
from tests.support.realapi import REPO, RealApi

pytestmark = [pytest.mark.netns, pytest.mark.realapi]
TOOL = str(REPO / "scripts" / "apiserver")


def _gone(pids: dict[str, tuple[int, str]]) -> bool:
    return not any(alive(pid, started) for pid, started in pids.values())


def test_up_in_a_given_namespace_then_down_removes_exactly_what_it_made(tmp_path: Path) -> None:
    with Lab() as lab:
        ns = lab.ns("api")
        (tmp_path / "keep.txt").write_text("mine")  # DIR exists and holds a file of ours: both survive
        api = RealApi.up(tmp_path, "--netns", ns, "--address", "198.18.0.77")
        assert api.env["SERVER"] == "https://198.18.0.77:6443"
        assert api.env["KUBECONFIG"] == str(tmp_path.resolve() / "admin.kubeconfig")
        assert api.env["NETNS"] == ns
        state = State.load(tmp_path)
        pids = {name: (int(p), str(s)) for name, (p, s) in state.pids.items()}
        assert set(pids) == {"kube-apiserver", "etcd"}
        version = api.kubectl("version", "-o", "json").stdout
        assert '"gitVersion": "v1.37.2"' in version, version
        assert api.kubectl("get", "--raw", "/readyz").stdout == "ok"
        assert api.get("namespace", "kube-system")["metadata"]["name"] == "kube-system"
        api.down()
        assert _gone(pids)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
        assert Path(f"/run/netns/{ns}").exists(), "down removed a namespace it did not create"
        assert "198.18.0.77" not in lab.ip(ns, "-o", "addr", "show").stdout


def test_up_refuses_a_missing_namespace_in_one_line(tmp_path: Path) -> None:
    res = subprocess.run([TOOL, "up", str(tmp_path / "d"), "--netns", "mt-no-such-ns", "--address", "198.18.0.9"],
                         capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip() == "apiserver up: no network namespace mt-no-such-ns", res.stderr
    assert res.stdout == ""
    assert not (tmp_path / "d").exists(), "a refused up left its directory behind"


def test_interrupted_up_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    proc = subprocess.Popen([TOOL, "up", str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # a cold cache builds first
    state: State | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = State.load(directory)
        except (OSError, ValueError):
            state = None
        if state is not None and "etcd" in state.pids:
            break
        time.sleep(0.05)
    assert state is not None and proc.poll() is None, "up ended before it started etcd"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err.decode()
    assert _gone({n: (int(p), str(s)) for n, (p, s) in state.pids.items()})
    assert not Path(f"/run/netns/{state.netns}").exists(), "the namespace up created is still there"
    assert not directory.exists()
    assert not (directory / STATE).exists()
