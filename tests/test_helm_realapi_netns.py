"""The Helm chart installed into a real kube-apiserver (scripts/apiserver: built from its Go module, run
in its own network namespace): CRD first, then every object of the chart, then a clean uninstall.

No controllers run there, so the DaemonSet gets no Pods: this proves the API server accepts and stores
every object as rendered (schemas, the CRD before the MeshConfig that needs it, the admission policy).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import gotools
from tests.test_helm import CHART, HELM_ENV, NAMESPACE, ON

REPO = Path(__file__).resolve().parent.parent
# The repository's own once scripts/apiserver is merged; until then the real-API branch's worktree.
APISERVER = Path(
    os.environ.get("MESHD_APISERVER")
    or next(p for p in (REPO / "scripts" / "apiserver", Path("/work/wt-api/scripts/apiserver")) if p.exists())
)
pytestmark = pytest.mark.netns

# Every object of the chart, as (API path, name): the API server lists each path filtered by name.
LIST_OBJECTS = """
import json, sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
api = client.ApiClient()
out = {}
for path, name in zip(sys.argv[2::2], sys.argv[3::2]):
    url = f"{api.configuration.host}{path}?fieldSelector=metadata.name={name}"
    r = api.call_api("GET", url, header_params={"Accept": "application/json"})
    r.read()
    assert r.status == 200, (path, r.status, r.data)
    out[path] = sorted(i["metadata"]["name"] for i in json.loads(r.data)["items"])
print(json.dumps(out))
"""
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
PATHS = {
    CRDS: "meshconfigs.meshd.io",
    "/apis/meshd.io/v1alpha1/meshconfigs": "default",
    f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts": "meshd",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles": "meshd",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings": "meshd",
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies": "meshd-node-ownership",
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings": "meshd-node-ownership",
    f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets": "meshd",
}
ONLY_THE_CRD = {path: ([name] if path == CRDS else []) for path, name in PATHS.items()}


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.netns, self.kubeconfig = env["NETNS"], env["KUBECONFIG"]

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv],
                              capture_output=True, text=True, timeout=300, check=False, env=env)  # fmt: skip

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(gotools.tool("helm")), "--kubeconfig", self.kubeconfig, *args, env=HELM_ENV)

    def objects(self) -> dict[str, list[str]]:
        res = self.run(sys.executable, "-c", LIST_OBJECTS, self.kubeconfig, *itertools.chain(*PATHS.items()))
        assert res.returncode == 0, res.stderr
        found: dict[str, list[str]] = json.loads(res.stdout)
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    directory = tmp_path / "apiserver"
    res = subprocess.run([str(APISERVER), "up", str(directory)],
                         capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip
    try:
        assert res.returncode == 0, f"scripts/apiserver up failed: {res.stderr.strip()[-2000:]}"
        yield Cluster(dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line))
    finally:
        down = subprocess.run([str(APISERVER), "down", str(directory)],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert down.returncode == 0, f"scripts/apiserver down failed: {down.stderr.strip()}"


def test_chart_installs_into_the_real_api_server_and_uninstalls(cluster: Cluster) -> None:
    res = cluster.helm("install", "meshd", str(CHART), "--namespace", NAMESPACE)
    assert res.returncode == 0, res.stderr
    assert "STATUS: deployed" in res.stdout
    assert cluster.objects() == {path: [name] for path, name in PATHS.items()}
    res = cluster.helm("uninstall", "meshd", "--namespace", NAMESPACE, "--wait")
    assert res.returncode == 0, res.stderr
    # Helm never deletes what crds/ installed; every templated object is gone.
    assert cluster.objects() == ONLY_THE_CRD


def test_monitoring_objects_need_the_prometheus_operator_crds(cluster: Cluster) -> None:
    """With monitoring on and no monitoring.coreos.com CRDs, Helm refuses and creates no templated object."""
    res = cluster.helm("install", "meshd", str(CHART), "--namespace", NAMESPACE, "--set", ON)
    assert res.returncode != 0
    assert "monitoring.coreos.com" in res.stderr
    assert cluster.objects() == ONLY_THE_CRD
