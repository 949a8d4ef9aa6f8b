"""Real agents, one per node namespace, against the real kube-apiserver (scripts/apiserver), each with a
token of the manifests' ServiceAccount bound to a Pod on its node: authorization is the manifests'
ClusterRole. The scenarios of test_agents_k8s_netns.py that a real server can show; what it cannot (409
storms, malformed watch events) stays on the fake there.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from meshd.demo.agents import Agent
from meshd.demo.stores import node_object
from meshd.demo.traffic import PingRun
from tests.conftest import RealCluster, apply_manifests
from tests.support.agents import converge, say, scrape
from tests.support.observe import eventually, log_records, metric, owned_routes, samples, wg_peers, wg_show

pytestmark = [pytest.mark.netns, pytest.mark.realapi]


def test_converge_publish_garbage_join_delete(
    real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = real_cluster
    lab, nodes, mesh = c.lab, c.nodes, c.mesh
    mesh.start()
    converged = converge(c.mesh)
    assert all(a.http_get(lab, "/readyz")[0] == 200 for a in mesh.agents)
    for node in nodes[:3]:
        ann = c.annotations(node)
        assert ann["meshd.io/public-key"] == wg_show(lab, node, "public-key")
        assert ann["meshd.io/endpoint"] == f"{node.underlay}:{wg_show(lab, node, 'listen-port')}"
        assert set(ann["meshd.io/capabilities"].split(",")) >= {"wireguard", "vxlan"}

    # garbage: ignored and counted; no traffic lost; no agent patches its node with nothing changed
    patches = c.api.requests("PATCH", "nodes")
    passes = [metric(scrape(c.mesh, a), "meshd_reconciles_total") or 0 for a in mesh.agents]
    ping = PingRun.start(lab, nodes[0], nodes[1], seconds=8)
    junk = node_object(nodes[0]) | {"metadata": {"name": "junk", "annotations": {
        "meshd.io/public-key": "not-a-key", "meshd.io/endpoint": "x"}}}  # fmt: skip
    junk["spec"] = {"podCIDRs": ["198.19.99.0/24"]}
    junk["status"] = {"addresses": [{"type": "InternalIP", "address": "198.18.0.99"}]}
    c.store.put_node(junk)

    def garbage_seen_and_resynced() -> bool:
        texts = [scrape(c.mesh, a) for a in mesh.agents]
        return all(
            metric(t, "meshd_invalid_peers", '{reason="bad-public-key"}') == 1
            and (metric(t, "meshd_reconciles_total") or 0) >= p + 2
            for t, p in zip(texts, passes, strict=True)
        )

    assert eventually(garbage_seen_and_resynced, timeout=30)
    sent, received = ping.finish()
    assert sent == received, f"lost {sent - received} pings while a garbage node appeared"
    assert all(len(wg_peers(lab, n)) == 2 for n in nodes[:3])
    assert all("198.19.99.0" not in owned_routes(lab, n) for n in nodes[:3])
    assert c.api.requests("PATCH", "nodes") == patches, "annotations re-patched with nothing changed"
    c.store.remove("junk")

    t0 = time.monotonic()
    mesh.add(nodes[3])  # the admin registers the node, a Pod lands on it, its agent starts
    converge(c.mesh)
    joined = time.monotonic() - t0
    assert all(len(wg_peers(lab, n)) == 3 for n in nodes)
    assert all(str(nodes[3].pod_cidrs[0]) in owned_routes(lab, n) for n in nodes[:3])

    gone_key = c.annotations(nodes[3])["meshd.io/public-key"]
    mesh.remove(nodes[3])  # its agent stops, `kubectl delete node`
    assert eventually(lambda: all(gone_key not in wg_peers(lab, n) for n in nodes[:3]))
    assert all(str(nodes[3].pod_cidrs[0]) not in owned_routes(lab, n) for n in nodes[:3])
    converge(c.mesh)
    say(capsys, f"[real API] 3 agents converged in {converged:.1f}s; a 4th joined in {joined:.1f}s")


def test_toggle_encryption_by_kubectl_patch_under_ping(
    real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c, lab, nodes, mesh = real_cluster.started()
    c.api.kubectl("annotate", "node", "node0", "example.com/owner=someone-else")  # another writer's key
    losses, generation = [], 0
    for mode, transport in [("Disabled", "vxlan"), ("Enabled", "wireguard")]:
        ping = PingRun.start(lab, nodes[0], nodes[1], seconds=6)
        time.sleep(1)
        generation = mesh.set_mode(mode)  # kubectl patch meshconfig default --type=merge
        converge(c.mesh, transport, timeout=60)
        sent, received = ping.finish()
        losses.append(sent - received)
        assert received > 0
        assert metric(scrape(c.mesh, mesh.agents[0]), "meshd_peers", f'{{transport="{transport}"}}') == 2
    say(capsys, f"[real API toggle] pings lost: Enabled->Disabled {losses[0]}, Disabled->Enabled {losses[1]}"
                 " (of 120 each)")  # fmt: skip
    assert losses == [0, 0], losses

    def applied() -> bool:
        return all(c.annotations(n).get("meshd.io/observed-generation") == str(generation) for n in nodes[:3])

    assert eventually(applied), [c.annotations(n).get("meshd.io/observed-generation") for n in nodes[:3]]
    assert c.annotations(nodes[0])["example.com/owner"] == "someone-else", "the other writer's key was lost"
    table = c.api.kubectl("get", "meshconfig", "default").stdout.splitlines()
    assert table[1].split()[1] == "Enabled", table
    assert samples(scrape(c.mesh, mesh.agents[0]), "meshd_reconcile_errors_total") == []


def test_agent_restart_keeps_traffic_and_writes_nothing(
    real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c, lab, nodes, mesh = real_cluster.started()
    victim = mesh.agents[1]
    ping = PingRun.start(lab, nodes[0], nodes[1], seconds=6)
    time.sleep(1)
    victim.stop(signal.SIGKILL)
    lists, patches = c.api.requests("LIST", "nodes"), c.api.requests("PATCH", "nodes")
    time.sleep(1)
    victim.start(lab)
    assert eventually(lambda: victim.http_get(lab, "/readyz")[0] == 200)
    before = metric(scrape(c.mesh, victim), "meshd_reconciles_total") or 0
    assert eventually(lambda: (metric(scrape(c.mesh, victim), "meshd_reconciles_total") or 0) > before)
    sent, received = ping.finish()
    say(capsys, f"[real API restart] pings lost across an agent kill+restart: {sent - received} of {sent}")
    assert sent == received
    assert samples(scrape(c.mesh, victim), "meshd_drift_repairs_total") == [], (
        "the restarted agent changed the kernel"
    )
    assert c.api.requests("LIST", "nodes") > lists, "the restarted agent never listed nodes"
    assert c.api.requests("PATCH", "nodes") == patches, "the restarted agent re-patched unchanged annotations"


def _relisted(agent: Agent) -> list[dict[str, Any]]:
    return [r for r in log_records(agent.log_path) if "(410): relisting" in r["msg"]]


def test_api_server_outage_then_relist_after_compaction_and_a_new_node_joins(
    real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c, lab, nodes, mesh = real_cluster.started()
    old = list(mesh.agents)
    ping = PingRun.start(lab, nodes[0], nodes[2], seconds=20)
    time.sleep(0.5)
    c.api.stop_apiserver()  # SIGTERM, and wait until it has exited
    t0 = time.monotonic()
    # while it is down, etcd moves on and is compacted: every resume point the agents hold is gone
    revision = c.api.bump_and_compact()
    retried = eventually(lambda: all(any(r["msg"].startswith("watching nodes failed")
                                         for r in log_records(a.log_path)) for a in old), timeout=15)  # fmt: skip
    time.sleep(max(0.0, 8 - (time.monotonic() - t0)))
    stopped = time.monotonic() - t0
    assert all(a.alive() and a.http_get(lab, "/healthz")[0] == 200 for a in old)
    assert all(a.http_get(lab, "/readyz")[0] == 200 for a in old), "synced agents must stay ready"
    c.api.start_apiserver()
    assert retried, "no agent noticed the API server was gone"
    assert eventually(lambda: all(_relisted(a) for a in old), timeout=60), [a.log_tail(5) for a in old]
    # a restarted API server refuses (403) until its RBAC caches sync: that must not stop anyone for good
    assert eventually(lambda: all(a.http_get(lab, "/readyz")[0] == 200 for a in old), timeout=60), [
        a.http_get(lab, "/readyz") for a in old
    ]
    sent, received = ping.finish()
    say(capsys, f"[real API outage] API server stopped {stopped:.1f}s (etcd compacted at revision {revision}); "
                 f"pings lost {sent - received} of {sent}")  # fmt: skip
    assert sent == received
    for agent in old:
        scraped = scrape(c.mesh, agent)
        for kind in ("connection", "expired"):
            assert metric(scraped, "meshd_datastore_errors_total", f'{{kind="{kind}"}}'), (
                agent.node.name,
                kind,
            )
    t1 = time.monotonic()
    mesh.add(nodes[3])
    converge(c.mesh)
    say(capsys, f"[real API outage] a node joining afterwards got in after {time.monotonic() - t1:.1f}s")
    assert all(len(wg_peers(lab, n)) == 3 for n in nodes)


def test_clusterrole_missing_a_verb_fails_readyz_and_the_mesh_stays_up(real_cluster: RealCluster) -> None:
    c, lab, nodes, mesh = real_cluster.started()
    role = c.api.get("clusterrole", "meshd")
    for rule in role["rules"]:
        if rule["resources"] == ["nodes"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
    c.api.kubectl("replace", "-f", "-", stdin=json.dumps(role))
    sa = "--as=system:serviceaccount:kube-system:meshd"
    assert eventually(
        lambda: c.api.kubectl("auth", "can-i", "watch", "nodes", sa, check=False).stdout.strip() == "no"
    )
    victim = mesh.agents[1]
    ping = PingRun.start(lab, nodes[0], nodes[1], seconds=8)
    time.sleep(0.5)
    victim.stop()
    victim.start(lab)

    def refused() -> bool:
        code, detail = victim.http_get(lab, "/readyz")
        return code == 503 and "403" in detail and 'cannot watch resource "nodes"' in detail

    assert eventually(refused, timeout=30), victim.http_get(lab, "/readyz")
    sent, received = ping.finish()
    assert sent == received, f"lost {sent - received} pings while the agent lacked a verb"
    assert victim.alive() and victim.http_get(lab, "/healthz")[0] == 200
    assert len(wg_peers(lab, nodes[1])) == 2 and str(nodes[0].pod_cidrs[0]) in owned_routes(lab, nodes[1])
    assert all(a.http_get(lab, "/readyz")[0] == 200 for a in mesh.agents if a is not victim)
    assert any("watching nodes refused" in r["msg"] for r in log_records(victim.log_path))
    apply_manifests(c.api)  # the ClusterRole fixed: the agent recovers without a restart
    assert eventually(lambda: victim.http_get(lab, "/readyz")[0] == 200, timeout=60), victim.http_get(
        lab, "/readyz"
    )
