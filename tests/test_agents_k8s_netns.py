"""Real agents as processes, one per node namespace, real wireguard-go, the Kubernetes datastore against the
fake API server (tests/fakekube) running as a process in the lab's switch namespace (issue 4).

The agents find the API server at 198.18.0.250 on the underlay bridge; the test drives it from inside the
switch namespace through the real REST API (nodes, meshconfigs) and its /_control/ endpoints.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshd.demo.agents import Agent, Mesh
from meshd.demo.netlab import Lab, LabNode, build_cluster
from meshd.demo.stores import KubeStore, node_object
from meshd.demo.traffic import PingRun
from tests.support.observe import eventually, log_records, metric, owned_routes, samples, wg_peers, wg_show

pytestmark = pytest.mark.netns

API_IP, API_PORT = "198.18.0.250", 6443
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Cluster:
    """Four lab nodes (the mesh starts with three), the fake API server, and the mesh of agents."""

    lab: Lab
    nodes: list[LabNode]
    api: KubeStore
    mesh: Mesh

    def control(self, op: str, **args: Any) -> Any:
        return self.api.call("POST", f"/_control/{op}", args)

    def count(self, verb: str, resource: str = "nodes", name: str | None = None) -> int:
        args = {"verb": verb, "resource": resource} | ({"name": name} if name else {})
        return int(self.control("count", **args)["count"])

    def annotations(self, node: LabNode) -> dict[str, str]:
        obj = self.api.node(node.name)
        assert obj is not None, f"node {node.name} has no record"
        return dict(obj["metadata"].get("annotations") or {})


def start_fake_api(lab: Lab, workdir: Path) -> KubeStore:
    """The fake API server as a process in the switch namespace (the first one the cluster created)."""
    switch = lab.namespaces[0]
    lab.ip(switch, "addr", "add", f"{API_IP}/24", "dev", "br0")
    kubeconfig = workdir / "kubeconfig"
    proc = lab.popen(
        switch, sys.executable, "-m", "tests.fakekube", "--host", API_IP, "--port", str(API_PORT),
        "--kubeconfig-out", str(kubeconfig), "--bookmark-interval", "1",
        stdout=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url == f"http://{API_IP}:{API_PORT}", f"the fake API server did not start: {url!r}"
    return KubeStore(lab, switch, url, kubeconfig)


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[Cluster]:
    with Lab() as lab:
        nodes = build_cluster(lab, 4)
        api = start_fake_api(lab, tmp_path)
        yield Cluster(lab, nodes, api, Mesh(lab, nodes[:3], tmp_path, api))


def _converge(c: Cluster, transport: str = "wireguard", *, timeout: float = 90) -> float:
    """Seconds until every agent has every other node over `transport` and all pods ping each other."""
    t0 = time.monotonic()
    ok = c.mesh.wait_for(transport, timeout=timeout)
    assert ok, f"no {transport} mesh:\n" + "\n".join(a.log_tail(8) for a in c.mesh.agents)
    return time.monotonic() - t0


def _scrape(c: Cluster, agent: Agent) -> str:
    code, text = agent.http_get(c.lab, "/metrics")
    assert code == 200, f"/metrics of {agent.node.name}: {code}"
    return text


def _say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_converge_publish_join_leave_garbage(k8s: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    lab, nodes, mesh = k8s.lab, k8s.nodes, k8s.mesh
    mesh.start()
    converged = _converge(k8s)
    assert all(a.http_get(lab, "/readyz")[0] == 200 for a in mesh.agents)

    # the published annotations are the device's key and endpoint, and the VXLAN device's MAC
    for node in nodes[:3]:
        ann = k8s.annotations(node)
        assert ann["meshd.io/public-key"] == wg_show(lab, node, "public-key")
        assert ann["meshd.io/endpoint"] == f"{node.underlay}:{wg_show(lab, node, 'listen-port')}"
        link = lab.ip(node.ns, "-br", "link", "show", "meshd-vxlan").stdout.split()
        assert ann["meshd.io/vxlan-mac"] == link[2]
        assert set(ann["meshd.io/capabilities"].split(",")) >= {"wireguard", "vxlan"}

    # /metrics: peers by transport, and handshake times that are the device's
    text = _scrape(k8s, mesh.agents[0])
    assert metric(text, "meshd_peers", '{transport="wireguard"}') == 2
    assert metric(text, "meshd_peers", '{transport="vxlan"}') == 0
    handshakes = dict(line.split() for line in wg_show(lab, nodes[0], "latest-handshakes").splitlines())
    for peer in nodes[1:3]:
        seen = metric(text, "meshd_peer_last_handshake_seconds", f'{{peer="{peer.name}"}}')
        device = int(handshakes[k8s.annotations(peer)["meshd.io/public-key"]])  # whole seconds
        assert seen is not None and 0 < seen < device + 1, (seen, device)

    # garbage annotations: ignored and counted; nobody is disturbed and nobody re-patches its node
    k8s.control("reset-counts")
    passes = [metric(_scrape(k8s, a), "meshd_reconciles_total") or 0 for a in mesh.agents]
    ping = PingRun.start(lab, nodes[0], nodes[1], seconds=8)
    junk = {
        "metadata": {
            "name": "junk",
            "annotations": {"meshd.io/public-key": "not-a-key", "meshd.io/endpoint": "x"},
        },
        "spec": {"podCIDRs": ["198.19.99.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.99"}]},
    }
    k8s.api.put_node(junk)

    def garbage_seen_and_resynced() -> bool:
        texts = [_scrape(k8s, a) for a in mesh.agents]
        return all(
            metric(t, "meshd_invalid_peers", '{reason="bad-public-key"}') == 1
            and (metric(t, "meshd_reconciles_total") or 0) >= p + 2  # the event, then a resync tick
            for t, p in zip(texts, passes, strict=True)
        )

    assert eventually(garbage_seen_and_resynced, timeout=30)
    sent, received = ping.finish()
    assert sent == received, f"lost {sent - received} pings while a garbage node appeared"
    assert all(len(wg_peers(lab, n)) == 2 for n in nodes[:3])
    assert all("198.19.99.0" not in owned_routes(lab, n) for n in nodes[:3])
    assert k8s.count("patch") == 0 and k8s.count("update") == 0, "annotations re-patched with nothing changed"

    # a fourth node joins
    t0 = time.monotonic()
    mesh.add(nodes[3])
    _converge(k8s)
    joined = time.monotonic() - t0
    assert all(len(wg_peers(lab, n)) == 3 for n in nodes)
    assert all(str(nodes[3].pod_cidrs[0]) in owned_routes(lab, n) for n in nodes[:3])

    # deleting a node's record removes it from every peer list and routing table
    gone_key = k8s.annotations(nodes[3])["meshd.io/public-key"]
    mesh.remove(nodes[3])
    assert eventually(lambda: all(gone_key not in wg_peers(lab, n) for n in nodes[:3]))
    assert all(len(wg_peers(lab, n)) == 2 for n in nodes[:3])
    assert all(str(nodes[3].pod_cidrs[0]) not in owned_routes(lab, n) for n in nodes[:3])
    _converge(k8s)
    _say(capsys, f"[k8s] 3 agents converged in {converged:.1f}s; a 4th joined in {joined:.1f}s")


def test_toggle_encryption_under_ping_and_conflict(k8s: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    lab, nodes, mesh = k8s.lab, k8s.nodes, k8s.mesh
    mesh.start()
    _converge(k8s)
    # someone else changes node0 just before its agent's next patch: a 409, retried on the fresh object
    k8s.control("touch", verb="patch", resource="nodes", name="node0")
    losses, generation = [], 0
    for mode, transport in [("Disabled", "vxlan"), ("Enabled", "wireguard")]:
        ping = PingRun.start(lab, nodes[0], nodes[1], seconds=6)
        time.sleep(1)
        generation = mesh.set_mode(mode)
        _converge(k8s, transport, timeout=60)
        sent, received = ping.finish()
        losses.append(sent - received)
        assert received > 0
        text = _scrape(k8s, mesh.agents[0])
        assert metric(text, "meshd_peers", f'{{transport="{transport}"}}') == 2
    _say(capsys, f"[k8s toggle] pings lost: Enabled->Disabled {losses[0]}, Disabled->Enabled {losses[1]} "
                 "(of 120 each)")  # fmt: skip
    assert max(losses) <= 2, losses  # make-before-break: a stray packet at most, never an outage

    def applied() -> bool:
        return all(
            k8s.annotations(n).get("meshd.io/observed-generation") == str(generation) for n in nodes[:3]
        )

    assert eventually(applied), [k8s.annotations(n).get("meshd.io/observed-generation") for n in nodes[:3]]
    assert "fakekube/touched" in k8s.annotations(nodes[0]), "the other writer's change was lost"
    conflicts = [r for r in log_records(mesh.agents[0].log_path) if "(409)" in r["msg"]]
    assert conflicts, "node0's agent never met the conflict"
    assert samples(_scrape(k8s, mesh.agents[0]), "meshd_reconcile_errors_total") == []


def test_agent_restart_keeps_traffic_and_writes_nothing(
    k8s: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, nodes, mesh = k8s.lab, k8s.nodes, k8s.mesh
    mesh.start()
    _converge(k8s)
    victim = mesh.agents[1]
    ping = PingRun.start(lab, nodes[0], nodes[1], seconds=6)
    time.sleep(1)
    victim.stop(signal.SIGKILL)
    k8s.control("reset-counts")
    time.sleep(1)
    victim.start(lab)
    assert eventually(lambda: victim.http_get(lab, "/readyz")[0] == 200)
    before = metric(_scrape(k8s, victim), "meshd_reconciles_total") or 0
    assert eventually(lambda: (metric(_scrape(k8s, victim), "meshd_reconciles_total") or 0) > before)
    sent, received = ping.finish()
    _say(capsys, f"[k8s restart] pings lost across an agent kill+restart: {sent - received} of {sent}")
    assert sent == received
    assert samples(_scrape(k8s, victim), "meshd_drift_repairs_total") == [], (
        "the restarted agent changed the kernel"
    )
    assert k8s.count("list") >= 1, "the restarted agent never listed nodes"
    assert k8s.count("patch") == 0, "the restarted agent re-patched unchanged annotations"


def test_api_outage_keeps_traffic_then_relists_and_a_new_node_joins(
    k8s: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, nodes, mesh = k8s.lab, k8s.nodes, k8s.mesh
    mesh.start()
    _converge(k8s)
    old = list(mesh.agents)
    ping = PingRun.start(lab, nodes[0], nodes[2], seconds=12)
    time.sleep(0.5)
    k8s.control("pause")  # connections dropped, every request refused
    # meanwhile the cluster moves on without us (a new node registers through another replica) and the
    # store compacts: our agents' resume points are gone, so they must relist (410), not crash
    k8s.control("put", resource="nodes", object=node_object(nodes[3]))
    k8s.control("compact")
    k8s.control("reset-counts")
    newcomer = mesh.add(nodes[3], register=False)

    def retries(agent: Agent) -> list[dict[str, Any]]:
        return [r for r in log_records(agent.log_path) if r["msg"].startswith("watching nodes failed")]

    assert eventually(lambda: all(len(retries(a)) >= 3 for a in old), timeout=30)
    assert eventually(lambda: newcomer.http_get(lab, "/readyz")[0] != 0)
    code, detail = newcomer.http_get(lab, "/readyz")
    assert code == 503, f"ready without ever reaching the API server: {detail}"
    assert all(a.alive() and a.http_get(lab, "/healthz")[0] == 200 for a in old)
    assert all(a.http_get(lab, "/readyz")[0] == 200 for a in old), "synced agents must stay ready"
    sent, received = ping.finish()
    k8s.control("resume")
    t0 = time.monotonic()
    _converge(k8s)
    back = time.monotonic() - t0
    _say(capsys, f"[k8s outage] pings lost during the API outage: {sent - received} of {sent}; "
                 f"the new node joined {back:.1f}s after the server came back")  # fmt: skip
    assert sent == received
    assert newcomer.http_get(lab, "/readyz")[0] == 200
    assert all(a.alive() for a in mesh.agents)
    backoff: dict[str, list[float]] = {}
    for agent in old:
        records = log_records(agent.log_path)
        relists = [
            r for r in records if r["msg"].startswith("nodes watch") and "(410): relisting" in r["msg"]
        ]
        assert relists, f"{agent.node.name} did not relist nodes after the 410"
        waits = [float(r["msg"].rsplit("retrying in ", 1)[1].split("s:")[0]) for r in retries(agent)]
        assert max(waits) > min(waits), f"{agent.node.name} retried without backing off: {waits}"
        backoff[agent.node.name] = waits
        scraped = agent.http_get(lab, "/metrics")[1]
        for kind in ("connection", "expired"):
            seen = metric(scraped, "meshd_datastore_errors_total", f'{{kind="{kind}"}}')
            assert seen, f"{agent.node.name}: no meshd_datastore_errors_total{{kind={kind}}}"
    _say(capsys, f"[k8s outage] watch retry delays (s): {backoff}")
    assert k8s.count("list") >= 4, "three relists after the 410 and the newcomer's first list"
    ann = k8s.annotations(nodes[3])
    assert ann["meshd.io/public-key"] == wg_show(lab, nodes[3], "public-key")
