"""When every candidate is gone, one of the other agents takes the MeshConfig-status Lease over and writes
the status: six MeshConfig-status reporters (tests/support/lease_fleet.py) over the real Lease of the real
kube-apiserver, the three candidates stopped as a SIGKILL would stop them (no release)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshd.agent.candidates import lowest_ranked
from meshd.datastore.lease import LEASE_NAME
from tests.support.observe import eventually
from tests.support.realapi import REPO, RealApi

pytestmark = [pytest.mark.netns, pytest.mark.realapi]

NAMES = [f"lease-node{i}" for i in range(6)]
CANDIDATES = lowest_ranked(NAMES)
LOOK = 10  # seconds between a non-candidate's looks on average (5 minutes in an agent): a short test


def lease(api: RealApi, namespace: str) -> tuple[str, str]:
    """The Lease's holder and renewTime ("" while there is none)."""
    path = "jsonpath={.spec.holderIdentity} {.spec.renewTime}"
    res = api.kubectl("get", "lease", "-n", namespace, LEASE_NAME, "-o", path, check=False)
    holder, _, renewed = res.stdout.strip().partition(" ") if res.returncode == 0 else ("", "", "")
    return holder, renewed


def holder(api: RealApi, namespace: str) -> str:
    return lease(api, namespace)[0]


def config_status(api: RealApi) -> dict[str, Any]:
    status: dict[str, Any] = api.get("meshconfig", "default").get("status") or {}
    return status


@pytest.mark.timeout(600)
def test_the_others_take_the_lease_over_when_every_candidate_is_gone(
    real_api: RealApi, tmp_path: Path
) -> None:
    namespace = f"meshd-lease-{uuid.uuid4().hex[:8]}"
    real_api.kubectl("create", "namespace", namespace)
    argv = [sys.executable, "-m", "tests.support.lease_fleet", str(real_api.admin), namespace, str(LOOK)]
    with (tmp_path / "fleet.log").open("w") as log:
        fleet = subprocess.Popen(
            ["ip", "netns", "exec", real_api.netns, *argv, *NAMES],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    assert fleet.stdin is not None and fleet.stdout is not None
    try:
        assert eventually(lambda: holder(real_api, namespace) in CANDIDATES, timeout=120), holder(
            real_api, namespace
        )
        fleet.stdin.write(f"stop {' '.join(sorted(CANDIDATES))}\n")
        fleet.stdin.flush()
        assert fleet.stdout.readline().strip() == "stopped"
        # cleared once the candidates are gone: only a new holder writes it again
        real_api.kubectl(
            "patch", "meshconfig", "default", "--subresource=status", "--type=merge", "-p", '{"status":null}'
        )
        assert "observedGeneration" not in config_status(real_api)
        assert eventually(lambda: holder(real_api, namespace) not in {*CANDIDATES, ""}, timeout=180), holder(
            real_api, namespace
        )
        generation = real_api.get("meshconfig", "default")["metadata"]["generation"]
        assert eventually(lambda: config_status(real_api).get("observedGeneration") == generation, timeout=60)
        # it keeps the Lease: renewed again and again by it, past the others' looks (20 s apart here)
        seen = [lease(real_api, namespace)]
        for _ in range(8):
            assert eventually(lambda: lease(real_api, namespace)[1] != seen[-1][1], timeout=60), seen
            seen.append(lease(real_api, namespace))
        assert {h for h, _ in seen} == {seen[0][0]} and seen[0][0] not in CANDIDATES, seen
    finally:
        fleet.stdin.close()
        try:
            fleet.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fleet.kill()
            fleet.wait(timeout=30)
        real_api.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        print((tmp_path / "fleet.log").read_text()[-3000:])
