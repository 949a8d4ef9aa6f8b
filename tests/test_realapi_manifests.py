"""The manifests against the real kube-apiserver: server-side apply, the CRD's schema enforced by the
server, printer columns, and the agent's identity as the DaemonSet gives it (a Pod-bound token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import apply_manifests
from tests.support.realapi import RealApi, RealStore, jwt_claims, token_kubeconfig

pytestmark = [pytest.mark.netns, pytest.mark.realapi]


def _meshconfig(name: str, spec: dict[str, object]) -> str:
    return json.dumps({"apiVersion": "meshd.io/v1alpha1", "kind": "MeshConfig",
                       "metadata": {"name": name}, "spec": spec})  # fmt: skip


def test_apply_server_side_crd_established_and_schema_enforced(real_api: RealApi) -> None:
    out = apply_manifests(real_api)  # a second apply: the session applied them once already
    for what in ("customresourcedefinition.apiextensions.k8s.io/meshconfigs.meshd.io",
                 "meshconfig.meshd.io/default", "serviceaccount/meshd", "clusterrole.rbac.authorization.k8s.io/meshd",
                 "clusterrolebinding.rbac.authorization.k8s.io/meshd", "daemonset.apps/meshd"):  # fmt: skip
        assert f"{what} serverside-applied" in out, out
    crd = real_api.get("crd", "meshconfigs.meshd.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert (
        real_api.get("daemonset", "-n", "kube-system", "meshd")["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        == "meshd"
    )

    bad: dict[str, dict[str, object]] = {
        "unknown mode": {"encryption": {"mode": "Sometimes"}},
        "unknown fallback": {"encryption": {"mode": "Enabled"}, "fallback": "GRE"},
        "port out of range": {"encryption": {"mode": "Enabled"}, "wireguard": {"listenPort": 70000}},
    }
    for why, spec in bad.items():
        res = real_api.kubectl("create", "-f", "-", stdin=_meshconfig("bad", spec), check=False)
        assert res.returncode != 0, f"the API server accepted a MeshConfig with {why}"
        assert "is invalid" in res.stderr and "spec." in res.stderr, res.stderr
        patch = json.dumps({"spec": spec})
        res = real_api.kubectl("patch", "meshconfig", "default", "--type=merge", "-p", patch, check=False)
        assert res.returncode != 0, f"the API server took a patch with {why}"
    kept = real_api.get("meshconfig", "default")
    assert kept["spec"]["encryption"]["mode"] == "Enabled" and kept["spec"]["fallback"] == "VXLAN"
    assert kept["spec"]["wireguard"]["listenPort"] == 51820, "the schema's default was not applied"
    assert real_api.kubectl("get", "meshconfig", "bad", check=False).returncode != 0

    table = real_api.kubectl("get", "meshconfig").stdout.splitlines()
    head = ["NAME", "MODE", "FALLBACK", "ACCEPTED", "NODES", "APPLIED", "READY", "ENCRYPTED", "AGE"]
    assert table[0].split() == head, table
    assert table[1].split()[:3] == ["default", "Enabled", "VXLAN"], table


def test_agent_identity_is_a_pod_bound_token_limited_to_the_clusterrole(
    real_api: RealApi, tmp_path: Path
) -> None:
    store = RealStore(real_api, tmp_path)
    store.put_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "idnode"}})
    try:
        token = store.enrol("idnode")
        claims = jwt_claims(token)["kubernetes.io"]
        assert claims["serviceaccount"]["name"] == "meshd" and claims["namespace"] == "kube-system"
        assert claims["pod"]["name"] == "meshd-idnode"
        assert claims["node"]["name"] == "idnode", "a Pod-bound token carries its node's name"
        kubeconfig = store.kubeconfig("idnode")
        who = json.loads(real_api.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
        user = who["status"]["userInfo"]
        assert user["username"] == "system:serviceaccount:kube-system:meshd"
        assert user["extra"]["authentication.kubernetes.io/node-name"] == ["idnode"]

        def can(*args: str) -> bool:
            res = real_api.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
            return res.stdout.strip() == "yes"

        assert can("watch", "nodes") and can("patch", "nodes") and can("list", "meshconfigs.meshd.io")
        assert can("patch", "meshconfigs.meshd.io", "--subresource=status")
        assert (
            not can("delete", "nodes")
            and not can("create", "nodes")
            and not can("patch", "meshconfigs.meshd.io")
        )
        assert not can("get", "secrets", "-n", "kube-system") and not can(
            "update", "nodes", "--subresource=status"
        )
        _admission_policy_holds(real_api, store)
    finally:
        real_api.kubectl("delete", "pod", "-n", "kube-system", "meshd-idnode", "--force", "--grace-period=0")
        real_api.kubectl("delete", "node", "idnode", "othernode", "--ignore-not-found")


def _admission_policy_holds(real_api: RealApi, store: RealStore) -> None:
    """The manifests' ValidatingAdmissionPolicy: the agent may change only meshd.io/* annotations of the
    Node its token is bound to (RBAC alone lets it patch every node)."""
    store.put_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "othernode"}})
    kubeconfig = store.kubeconfig("idnode")

    def as_agent(*args: str) -> tuple[int, str]:
        res = real_api.kubectl(*args, kubeconfig=kubeconfig, check=False)
        return res.returncode, res.stderr

    assert as_agent("annotate", "node", "idnode", "meshd.io/public-key=x")[0] == 0
    code, err = as_agent("annotate", "node", "othernode", "meshd.io/public-key=x")
    assert code != 0 and "may not change nodes othernode, only its own" in err, err
    code, err = as_agent("label", "node", "idnode", "example.com/role=x")
    assert code != 0 and "may change only meshd.io/* annotations" in err, err
    code, err = as_agent("annotate", "node", "idnode", "example.com/note=x")
    assert code != 0 and "may change only meshd.io/* annotations" in err, err
    code, err = as_agent("taint", "node", "idnode", "example.com/t=x:NoSchedule")
    assert code != 0 and "not labels, spec, taints" in err, err
    code, err = as_agent("patch", "node", "idnode", "-p", '{"spec":{"unschedulable":true}}')
    assert code != 0 and "not labels, spec, taints" in err, err
    real_api.kubectl("annotate", "node", "idnode", "example.com/owner=admin")  # the admin's own note
    code, err = as_agent("annotate", "node", "idnode", "example.com/owner-")
    assert code != 0 and "may change only meshd.io/* annotations" in err, err
    _unbound_token_may_change_nothing(real_api, store)
    annotations = real_api.get("node", "idnode")["metadata"]["annotations"]
    assert annotations == {"meshd.io/public-key": "x", "example.com/owner": "admin"}
    taints = real_api.get("node", "idnode")["spec"].get("taints", [])
    # the API server's own taint (no kubelet here), nothing the agent wrote
    assert [t["key"] for t in taints] == ["node.kubernetes.io/not-ready"]


def _unbound_token_may_change_nothing(real_api: RealApi, store: RealStore) -> None:
    """A token of the same ServiceAccount that is not bound to a Pod carries no node claim: denied."""
    token = real_api.kubectl(
        "create", "token", "meshd", "-n", "kube-system", "--duration", "1h"
    ).stdout.strip()
    assert "node" not in jwt_claims(token)["kubernetes.io"]
    kubeconfig = token_kubeconfig(
        store.workdir / "kubeconfigs" / "unbound.kubeconfig", real_api.server, Path(real_api.env["CA"]), token
    )
    res = real_api.kubectl(
        "annotate",
        "--overwrite",
        "node",
        "idnode",
        "meshd.io/public-key=y",
        kubeconfig=kubeconfig,
        check=False,
    )
    assert res.returncode != 0 and "carries no node claim" in res.stderr, res.stderr
