"""Shared fixtures. `real_api`: one real kube-apiserver (scripts/apiserver) per pytest run, with the
manifests applied; `real_cluster`: a fresh netns lab per test, plugged into it, with agents enrolled the
way the DaemonSet runs them. Tests using them are marked `realapi` (and `netns`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, LabNode, build_cluster
from tests.support.agents import converge
from tests.support.kernel import require_kernel_sync
from tests.support.realapi import REPO, RealApi, RealStore

# Hypothesis' timing checks are wall-clock assertions: on a loaded 2-core machine input generation is slow
# without anything being wrong. Tests never assert times, so none of these either.
settings.register_profile("meshd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("meshd")

# Agents and meshd commands in labs are forks of one warm server (meshd/demo/forked.py), not a cold Python
# each: a second here, minutes in the test VM. The demo and the benchmarks keep starting them cold.
os.environ.setdefault("MESHD_LAB_FORK", "1")

MANIFESTS = REPO / "manifests"


def apply_manifests(api: RealApi) -> str:
    """As the README says: the CRDs first (server-side), wait until Established, then the kustomize base.
    --force-conflicts: a test may have patched the MeshConfig or the ClusterRole with another manager."""
    crds = [
        arg for crd in ("crd-meshconfig.yaml", "crd-meshnode.yaml") for arg in ("-f", str(MANIFESTS / crd))
    ]
    out = api.kubectl("apply", "--server-side", "--force-conflicts", *crds)
    api.kubectl(
        "wait", "--for", "condition=Established", "--timeout", "60s",
        "crd/meshconfigs.meshd.io", "crd/meshnodes.meshd.io",
    )  # fmt: skip
    base = api.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS))
    return out.stdout + base.stdout


@pytest.fixture(scope="session")
def real_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApi]:
    api = RealApi.up(tmp_path_factory.mktemp("realapi") / "apiserver")
    try:
        apply_manifests(api)
        yield api
    finally:
        api.down()


def reset(api: RealApi) -> None:
    """Back to the state right after the manifests were applied: no nodes, no agent pods."""
    api.kubectl("delete", "nodes", "--all", "--wait=false")
    # what the garbage collector does to the MeshNodes those Nodes own (this server runs no
    # kube-controller-manager): a later test's Node of the same name starts without one
    api.kubectl("delete", "meshnodes", "--all", "--wait=false")
    api.kubectl("delete", "events", "--all", "-n", "default", "--wait=false")  # each test counts its own
    api.kubectl(
        "delete", "pods", "-n", "kube-system", "-l", "meshd-test=agent", "--force", "--grace-period=0"
    )
    apply_manifests(api)


@dataclass
class RealCluster:
    """Four lab nodes (the mesh starts with three) on an underlay that reaches the real API server."""

    lab: Lab
    nodes: list[LabNode]
    api: RealApi
    store: RealStore
    mesh: Mesh

    def started(self) -> tuple[RealCluster, Lab, list[LabNode], Mesh]:
        """Start the first three agents and wait for their WireGuard mesh."""
        self.mesh.start()
        converge(self.mesh, timeout=180)  # a wait bound only: a loaded 2-core machine is slow
        return self, self.lab, self.nodes, self.mesh

    def annotations(self, node: LabNode) -> dict[str, str]:
        obj = self.store.node(node.name)
        assert obj is not None, f"node {node.name} has no record"
        return dict(obj["metadata"].get("annotations") or {})


@pytest.fixture
def real_cluster(real_api: RealApi, tmp_path: Path) -> Iterator[RealCluster]:
    try:
        with Lab() as lab:
            nodes = build_cluster(lab, 4)
            real_api.attach(lab, lab.namespaces[0])
            store = RealStore(real_api, tmp_path)
            yield RealCluster(lab, nodes, real_api, store, Mesh(lab, nodes[:3], tmp_path, store))
    finally:
        if real_api.readyz()[0] != 200:
            real_api.start_apiserver()  # a test that stopped it failed before starting it again
        reset(real_api)


@pytest.fixture
def kernel_ns() -> Iterator[str]:
    """A fresh network namespace on a kernel with WireGuard and IPIP (the test fails otherwise)."""
    with Lab() as lab:
        ns = lab.ns("k")
        require_kernel_sync(ns)
        yield ns
