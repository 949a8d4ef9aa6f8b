"""The agent's Lease candidacy as wired (meshd.agent.status_wiring.lease_candidacy) over the Kubernetes
datastore fed by a fake API server: every agent agrees on the candidates, ranked among the nodes that run
meshd, and follows a candidate node that goes down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from meshd.agent.candidates import lowest_ranked
from meshd.agent.status_wiring import lease_candidacy
from meshd.core.codec import decode_node
from meshd.core.moves import Moves
from meshd.datastore.k8s_nodes import running_agent, slim
from meshd.datastore.kubernetes import KubernetesDatastore
from meshd.datastore.records import NamedRecords
from meshd.datastore.settings import WatchSettings
from meshd.retry import Backoff
from tests.fakekube import FakeKube

NAMES = [f"node{i}" for i in range(8)]
LIMIT = 30.0  # a bound on every wait, never an assertion about time


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, list[KubernetesDatastore]]]:
    """A datastore per node that runs an agent (all but node7), all synced against one fake API server."""
    with FakeKube(bookmark_interval=0.1) as kube:
        for i, name in enumerate(NAMES):  # node7 runs no agent: no meshd annotations
            kube.put("nodes", kube_node(name, None if i == 7 else "wireguard,vxlan", ready="True"))
        config = kube.write_kubeconfig(tmp_path / "kubeconfig")
        watch = WatchSettings(watch_timeout=5, backoff=Backoff(initial=0.05, maximum=0.3, jitter=0.05))
        made = [
            KubernetesDatastore(node_name=n, kubeconfig=config, watch=watch, moves=Moves()) for n in NAMES[:7]
        ]
        try:
            for ds in made:
                await ds.start()
            await until(lambda: all(ds.snapshot().synced for ds in made))
            yield kube, made
        finally:
            for ds in made:
                await ds.close()


async def until(cond: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not cond():  # noqa: ASYNC110 - a datastore per node: no one event to wait on
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), LIMIT)


def candidates(made: list[KubernetesDatastore]) -> set[str]:
    for ds in made:
        ds.snapshot()  # as each pass does: the records, and the names that run meshd, follow the objects
    return {ds.node_name for ds in made if lease_candidacy(ds, ds.node_name)()}


async def test_every_agent_agrees_on_the_candidates_and_follows_a_candidate_going_down(
    stores: tuple[FakeKube, list[KubernetesDatastore]],
) -> None:
    kube, made = stores
    running = NAMES[:7]
    assert candidates(made) == set(lowest_ranked(running)) and len(lowest_ranked(running)) == 3
    down = sorted(lowest_ranked(running))[0]
    obj: dict[str, Any] = kube_node(down, "wireguard,vxlan", ready="Unknown")  # its kubelet went silent
    kube.put("nodes", obj)
    left = [n for n in running if n != down]
    await until(lambda: candidates(made) - {down} == set(lowest_ranked(left)))
    assert set(lowest_ranked(left)) != set(lowest_ranked(running))  # the next one in line took its place


def test_a_kept_node_holds_only_its_ready_status_and_reads_the_same() -> None:
    """The datastore keeps of a Node's conditions only Ready's status (no heartbeat times, no others), and
    whether the node runs an agent reads the same from what it keeps as from the whole object."""
    for ready in ("True", "False", "Unknown", None):
        whole = kube_node("a", "wireguard", ready=ready)
        if ready is not None:
            whole["status"]["conditions"][1]["lastHeartbeatTime"] = "2026-12-01T09:00:00Z"
        kept, record = slim(whole), decode_node(whole)
        assert kept["status"].get("conditions") == (
            None if ready is None else [{"type": "Ready", "status": ready}]
        )
        assert running_agent(kept, record) == running_agent(whole, record) == (ready in ("True", None))


def test_the_datastore_follows_the_nodes_that_run_meshd_and_counts_only_their_comings_and_goings() -> None:
    """A node without meshd's annotations (no agent runs there: a node selector left it out) or that
    Kubernetes reports down (Ready False or Unknown) is no candidate; a node counts once its agent
    published and while it is not reported down; a record that changes but stays an agent's moves no
    count."""
    named = NamedRecords[dict[str, Any]](lambda name, obj: decode_node(obj), Moves(), running_agent)
    nodes = {
        "a": kube_node("a", "wireguard"),
        "b": kube_node("b"),
        "c": kube_node("c", "vxlan", ready="True"),
    }

    def agents_after(*touched: str) -> list[str]:
        for name in touched or (None,):
            named.touch(name)
        named.records(nodes)
        return list(named.agents)

    assert agents_after() == ["a", "c"]
    first = named.agents_changed
    nodes["a"] = kube_node("a", "wireguard,vxlan")  # changed, still an agent's
    assert agents_after("a") == ["a", "c"] and named.agents_changed == first
    nodes["b"] = kube_node("b", "wireguard")  # b's agent published
    assert agents_after("b") == ["a", "b", "c"] and named.agents_changed == first + 1
    nodes["c"] = kube_node("c", "vxlan", ready="Unknown")  # its kubelet stopped reporting
    assert agents_after("c") == ["a", "b"] and named.agents_changed == first + 2
    del nodes["a"]
    assert agents_after("a") == ["b"] and named.agents_changed == first + 3
    nodes["c"] = kube_node("c", "vxlan", ready="True")
    nodes["d"] = kube_node("d", ready="True")
    assert agents_after() == ["b", "c"] and named.agents_changed == first + 4  # a relist
    assert agents_after() == ["b", "c"] and named.agents_changed == first + 4  # the same again


def kube_node(name: str, caps: str | None = None, *, ready: str | None = None) -> dict[str, Any]:
    """A Node as the API server serves it: meshd's capabilities annotation when its agent published, a
    Ready condition when given."""
    status: dict[str, Any] = {"addresses": [{"type": "InternalIP", "address": f"198.18.0.{ord(name[0])}"}]}
    if ready is not None:
        status["conditions"] = [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": ready},
        ]
    return {
        "metadata": {"name": name, "annotations": {} if caps is None else {"meshd.io/capabilities": caps}},
        "spec": {"podCIDR": f"198.19.{ord(name[0])}.0/24"},
        "status": status,
    }
