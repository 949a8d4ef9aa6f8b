"""The Helm chart (manifests/helm/meshd) with `helm` built from helm.sh/helm/v3 (tests.support.gotools):
it lints, renders the same objects as the kustomize base (so the two cannot drift), and its values work.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import gotools
from tests.test_manifests import BASE, MONITORING, Doc, containers, one, render

CHART = BASE / "helm" / "meshd"
NAMESPACE = "kube-system"
# Helm's own labels; everything else in the chart's objects must equal the kustomize base.
HELM_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
}
ON = "monitoring.enabled=true"
MONITORING_KINDS = {"Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"}


# No user's Helm configuration, repositories or plugins: the chart is local and needs none.
HELM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "HELM_NO_PLUGINS": "1"}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(gotools.tool("helm"))
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, check=False, timeout=120, env=HELM_ENV
    )


def template(*sets: str, crds: bool = True, namespace: str = NAMESPACE) -> list[Doc]:
    args = ["template", "meshd", str(CHART), "--namespace", namespace]
    args += ["--include-crds"] if crds else []
    for s in sets:
        args += ["--set", s]
    res = helm(*args)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def without_helm_labels(doc: Doc) -> Doc:
    doc = copy.deepcopy(doc)
    for meta in (doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})):
        labels = {k: v for k, v in meta.get("labels", {}).items() if k not in HELM_LABELS}
        if labels:
            meta["labels"] = labels
    return doc


def with_api_defaults(doc: Doc) -> Doc:
    """The API server's defaulting the chart spells out: imagePullPolicy IfNotPresent for a tagged image."""
    doc = copy.deepcopy(doc)
    for c in containers(doc):
        if not c["image"].endswith(":latest"):
            c.setdefault("imagePullPolicy", "IfNotPresent")
    return doc


def by_key(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    keyed = {(d["apiVersion"], d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(keyed) == len(docs), "two objects with one kind and name"
    return keyed


def assert_same_objects(chart: list[Doc], kustomize: list[Doc]) -> None:
    got = by_key([without_helm_labels(d) for d in chart])
    want = by_key([with_api_defaults(d) for d in kustomize])
    assert sorted(got) == sorted(want)
    for key, doc in want.items():
        assert got[key] == doc, f"{key} differs between the chart and the kustomize base"


def test_helm_lint_passes() -> None:
    res = helm("lint", "--strict", str(CHART))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout


def test_helm_lint_fails_on_a_broken_chart(tmp_path: Path) -> None:
    broken = tmp_path / "meshd"
    subprocess.run(["cp", "-r", str(CHART), str(broken)], check=True)
    (broken / "templates" / "serviceaccount.yaml").write_text("kind: {{ .Values.nope.missing }}\n")
    res = helm("lint", "--strict", str(broken))
    assert res.returncode != 0


def test_default_values_render_the_kustomize_base() -> None:
    assert_same_objects(template(), render(BASE))


def test_monitoring_on_renders_the_base_plus_monitoring() -> None:
    assert_same_objects(template(ON), render(BASE) + render(MONITORING))


def test_crds_live_in_the_crds_dir_and_render_only_with_include_crds() -> None:
    assert {p.name for p in (CHART / "crds").iterdir()} == {"crd-meshconfig.yaml", "crd-meshnode.yaml"}
    kinds = {d["kind"] for d in template(crds=False)}
    assert "CustomResourceDefinition" not in kinds
    assert "MeshConfig" in kinds


def test_copied_files_equal_their_sources() -> None:
    pairs = {
        "crds/crd-meshconfig.yaml": BASE / "crd-meshconfig.yaml",
        "crds/crd-meshnode.yaml": BASE / "crd-meshnode.yaml",
        "files/prometheusrule.yaml": MONITORING / "prometheusrule.yaml",
        "files/meshd-dashboard.json": MONITORING / "meshd-dashboard.json",
    }
    for copied, source in pairs.items():
        assert (CHART / copied).read_text() == source.read_text(), f"cp {source} {CHART / copied}"


def agent(docs: list[Doc]) -> Doc:
    return one(docs, "DaemonSet")


def test_image_override_reaches_both_containers() -> None:
    docs = template("image.repository=registry.example/meshd", "image.tag=9.9.9", "image.pullPolicy=Always")
    for c in containers(agent(docs)):
        assert c["image"] == "registry.example/meshd:9.9.9"
        assert c["imagePullPolicy"] == "Always"


def test_node_selector_tolerations_and_resources_override() -> None:
    docs = template(
        "nodeSelector.meshd\\.io/pool=blue",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Equal",
        "tolerations[0].value=net",
        "resources.limits.memory=1Gi",
    )
    pod = agent(docs)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "meshd.io/pool": "blue"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "net"}]
    (meshd,) = pod["containers"]
    assert meshd["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}


def test_meshconfig_spec_comes_from_values() -> None:
    spec = one(template("meshConfig.spec.encryption.mode=Required"), "MeshConfig")["spec"]
    assert spec == {"encryption": {"mode": "Required"}, "fallback": "VXLAN"}
    assert "MeshConfig" not in {d["kind"] for d in template("meshConfig.create=false")}


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ((), set()),
        ((ON,), MONITORING_KINDS),
        ((ON, "monitoring.prometheusRule=false"), MONITORING_KINDS - {"PrometheusRule"}),
        ((ON, "monitoring.dashboard=false"), MONITORING_KINDS - {"ConfigMap"}),
    ],
)
def test_monitoring_switches(sets: tuple[str, ...], expected: set[str]) -> None:
    kinds = {d["kind"] for d in template(*sets)}
    assert kinds & MONITORING_KINDS == expected


def test_release_namespace_is_used_everywhere() -> None:
    docs: list[Any] = template(ON, namespace="net-system", crds=False)
    namespaced = [d for d in docs if "namespace" in d["metadata"]]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"net-system"}
    # ServiceAccount, DaemonSet, the Lease's Role and RoleBinding, monitoring
    assert len(namespaced) == 1 + 1 + 2 + len(MONITORING_KINDS)
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = one(docs, kind)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshd", "namespace": "net-system"}]
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["net-system"]}
