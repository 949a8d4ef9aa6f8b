"""MeshNodes, the MeshConfig status (Lease-elected writer), Events and `meshd graph` with real agents on
the real kube-apiserver, each on a Pod-bound token of the manifests' ServiceAccount (so RBAC and the
admission policy are the manifests')."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from meshd.demo.stores import node_object
from tests.conftest import RealCluster
from tests.support.agents import say
from tests.support.observe import eventually

pytestmark = [pytest.mark.netns, pytest.mark.realapi]


def meshnodes(c: RealCluster) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in c.api.get("meshnodes")["items"]}


def all_show(c: RealCluster, transport: str, generation: int) -> bool:
    names = {n.name for n in c.mesh.nodes}
    found = meshnodes(c)
    return set(found) >= names and all(
        (st := found[n].get("status") or {}).get("observedGeneration") == generation
        and {p["node"] for p in st.get("peers", [])} >= names - {n}
        and all(
            p["transport"] == transport and p["encrypted"] == (transport == "WireGuard")
            for p in st["peers"]
            if p["node"] in names
        )
        for n in names
    )


def status_patches(c: RealCluster) -> int:
    return c.api.requests("PATCH", "meshnodes", "status")


def config_status(c: RealCluster) -> dict[str, Any]:
    status: dict[str, Any] = c.api.get("meshconfig", "default").get("status") or {}
    return status


def lease_holder(c: RealCluster) -> str:
    lease = c.api.get("lease", "-n", "kube-system", "meshd-meshconfig-status")
    return str(lease["spec"].get("holderIdentity") or "")


def owned_by_their_nodes(c: RealCluster) -> bool:
    found = meshnodes(c)
    return len(found) >= 3 and all(
        [(o["kind"], o["name"], o["uid"]) for o in obj["metadata"].get("ownerReferences") or ()]
        == [("Node", name, c.api.get("node", name)["metadata"]["uid"])]
        for name, obj in found.items()
    )


@pytest.mark.timeout(900)  # one long scenario: a loaded 2-core machine needs more than the default
def test_meshnodes_columns_toggle_lease_takeover_events_graph(
    real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c, _, nodes, mesh = real_cluster.started()
    generation = int(c.api.get("meshconfig", "default")["metadata"]["generation"])
    assert eventually(lambda: all_show(c, "WireGuard", generation), timeout=60), meshnodes(c)
    # owned by the Node of that name that exists now (an agent re-owns one an earlier Node left behind)
    assert eventually(lambda: owned_by_their_nodes(c), timeout=60), meshnodes(c)
    columns(c)
    numbers = idle_and_toggle(c)
    admission(c)
    events_once_per_cause(c)
    takeover(c)
    graph(c)
    say(capsys, f"[status real API] MeshNode status writes for {len(mesh.agents)} nodes: {numbers}")
    assert len(nodes) == 4


def columns(c: RealCluster) -> None:
    assert eventually(lambda: (config_status(c).get("nodes") or {}).get("applied") == 3, timeout=30)
    out = c.api.kubectl("get", "meshnodes,meshconfig").stdout
    tables = [t.splitlines() for t in out.strip().split("\n\n")]
    (nodes,) = [t for t in tables if t[1].startswith("meshnode.meshd.io/")]
    assert nodes[0].split() == [
        "NAME", "READY", "ENCRYPTED", "PEERS", "WIREGUARD", "FALLBACK", "UNREACHABLE", "GENERATION", "AGE",
    ], out  # fmt: skip
    assert all(r.split()[1:7] == ["True", "True", "2", "2", "0", "0"] for r in nodes[1:]), out
    (config,) = [t for t in tables if t[1].startswith("meshconfig.meshd.io/")]
    assert config[0].split() == [
        "NAME", "MODE", "FALLBACK", "ACCEPTED", "NODES", "APPLIED", "READY", "ENCRYPTED", "AGE",
    ], out  # fmt: skip
    assert config[1].split()[:8] == [
        "meshconfig.meshd.io/default",
        "Enabled",
        "VXLAN",
        "True",
        "3",
        "3",
        "3",
        "3",
    ]


def idle_and_toggle(c: RealCluster) -> str:
    time.sleep(3)  # let the first handshakes settle
    before, t0 = status_patches(c), time.monotonic()
    time.sleep(10)
    idle = status_patches(c) - before
    idle_rate = idle / (time.monotonic() - t0)
    assert idle == 0, f"{idle} MeshNode status writes with the mesh idle"
    before, t0 = status_patches(c), time.monotonic()
    generation = c.mesh.set_mode("Disabled")
    assert eventually(lambda: all_show(c, "VXLAN", generation), timeout=30), meshnodes(c)
    seconds = time.monotonic() - t0
    assert eventually(
        lambda: config_status(c).get("nodes") == {"total": 3, "applied": 3, "ready": 3, "encrypted": 0},
        timeout=30,
    ), config_status(c)
    writes = status_patches(c) - before
    assert writes <= 3 * 3, writes
    return f"idle {idle_rate:.2f}/s; a toggle: {writes} writes, every MeshNode updated in {seconds:.1f}s"


def admission(c: RealCluster) -> None:
    """The agent of node0 may write only MeshNode node0: not node1's status, not a delete."""
    kubeconfig = c.store.kubeconfig("node0")

    def as_agent(*args: str) -> tuple[int, str]:
        res = c.api.kubectl(*args, kubeconfig=kubeconfig, check=False)
        return res.returncode, res.stderr

    patch = '{"status":{"summary":{"peers":0}}}'
    ok = as_agent("patch", "meshnode", "node0", "--subresource=status", "--type=merge", "-p", patch)
    assert ok[0] == 0, ok
    code, err = as_agent("patch", "meshnode", "node1", "--subresource=status", "--type=merge", "-p", patch)
    assert code != 0 and "may not change meshnodes node1, only its own" in err, err
    code, err = as_agent("delete", "meshnode", "node0")
    assert code != 0 and ("may not delete a MeshNode" in err or "forbidden" in err.lower()), err
    # our tampering is repaired at the agent's next write (a status that changed); the test moves on


def events_once_per_cause(c: RealCluster) -> None:
    def of(reason: str) -> list[dict[str, Any]]:
        items = c.api.get("events", "-n", "default", "--field-selector", f"reason={reason}")["items"]
        return [e for e in items if e.get("reportingComponent") == "meshd.io/agent"]

    assert eventually(
        lambda: sorted(e["involvedObject"]["name"] for e in of("KeyCreated")) == ["node0", "node1", "node2"]
    )
    assert all(e["count"] == 1 and e["involvedObject"]["uid"] for e in of("KeyCreated"))
    junk = node_object(c.nodes[3]) | {"metadata": {"name": "zz-junk"}}
    junk["spec"] = {"podCIDRs": [str(c.nodes[1].pod_cidrs[0])]}  # node1's pod CIDR: a conflict
    c.store.put_node(junk)
    assert eventually(lambda: len(of("PeerConflict")) >= 1, timeout=30)
    first = {e["metadata"]["name"]: e["count"] for e in of("PeerConflict")}
    time.sleep(8)  # many rounds and passes with the conflict still there: no new Event, no new count
    assert {e["metadata"]["name"]: e["count"] for e in of("PeerConflict")} == first
    c.store.remove("zz-junk")
    time.sleep(5)
    c.store.put_node(junk)  # the same cause again: the same Events, count + 1 (updated within 30 s)
    assert eventually(
        lambda: (
            {e["metadata"]["name"]: e["count"] for e in of("PeerConflict")}
            == {k: v + 1 for k, v in first.items()}
        ),
        timeout=60,
    ), of("PeerConflict")
    c.store.remove("zz-junk")


def takeover(c: RealCluster) -> None:
    holder = lease_holder(c)
    agent = next(a for a in c.mesh.agents if a.node.name == holder)
    agent.stop(signal.SIGKILL)
    generation = c.mesh.set_mode("Enabled")
    assert eventually(lambda: lease_holder(c) not in ("", holder), timeout=60), lease_holder(c)
    assert eventually(
        lambda: (
            config_status(c).get("observedGeneration") == generation
            and (config_status(c).get("nodes") or {}).get("applied") == 2
        ),
        timeout=30,
    ), config_status(c)


def graph(c: RealCluster) -> None:
    svg = c.store.workdir / "mesh.svg"
    argv = [
        sys.executable,
        "-m",
        "meshd",
        "graph",
        "--datastore",
        "kubernetes",
        "--kubeconfig",
        str(c.api.admin),
    ]
    subprocess.run(["ip", "netns", "exec", c.api.netns, *argv, "--output", str(svg)], check=True, timeout=300)
    texts = {"".join(el.itertext()).strip() for el in ET.parse(svg).iter() if el.tag.endswith("text")}
    assert all(any(t.startswith(n.name) for t in texts) for n in c.mesh.nodes), texts
