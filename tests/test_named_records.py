"""Node records kept in name order from one snapshot to the next equal a rebuild: NamedRecords after any
history of touched changes, and the Kubernetes datastore's snapshot after any history of list and watch
events (so every change it handles touches its name); unchanged records are shared."""

from __future__ import annotations

import random
from typing import Any

from meshd.core.model import InvalidNode, NodeRecord
from meshd.core.moves import Moves
from meshd.datastore.k8s_api import MESHCONFIGS, NODES
from meshd.datastore.kubernetes import KubernetesDatastore
from meshd.datastore.records import NamedRecords
from tests.told import told_exactly


def _decode(name: str, obj: int) -> NodeRecord:
    return InvalidNode(name, "v", str(obj))  # a new object per decode, so sharing shows


def _even(obj: int, record: NodeRecord) -> bool:
    return obj % 2 == 0


def test_records_from_the_last_ones_equal_a_rebuild_after_any_history() -> None:
    moves = Moves()
    for seed in range(200):
        rng = random.Random(seed)
        named: NamedRecords[int] = NamedRecords(_decode, moves, _even)
        nodes: dict[str, int] = {}
        last: tuple[NodeRecord, ...] = ()
        last_count, last_agents = named.agents_changed, named.agents
        for step in range(20):
            name, whole = f"n{rng.randrange(8)}", rng.random() < 0.05
            if whole:
                nodes = {f"n{i}": rng.randrange(3) for i in range(rng.randrange(6))}
                named.touch()
            elif rng.random() < 0.3:
                nodes.pop(name, None)
                named.touch(name)
            elif rng.random() < 0.9:
                nodes[name] = step
                named.touch(name)
            made = named.records(nodes)
            assert made == tuple(_decode(n, o) for n, o in sorted(nodes.items())), f"seed {seed}"
            count, agents = named.agents_changed, named.agents  # the agents' names follow too
            assert agents == tuple(n for n, o in sorted(nodes.items()) if o % 2 == 0), f"seed {seed}"
            assert (count == last_count) == (agents == last_agents), f"seed {seed}"  # it moves with them
            last_count, last_agents = count, agents
            if step and not whole and made is not last:  # it says which records went and came
                assert told_exactly(moves, last, made), f"seed {seed}"
            kept = {r.name: r for r in last}
            if not whole:  # only the touched name was decoded again
                assert all(kept.get(r.name) is r for r in made if r.name != name)
            last = made


def _node(name: str, rv: int, cidr: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(rv)},
        "spec": {"podCIDRs": [f"198.19.{cidr}.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": f"198.18.0.{cidr + 1}"}]},
    }


def test_the_kubernetes_snapshot_equals_a_fresh_list_after_any_events() -> None:
    for seed in range(100):
        rng = random.Random(seed)
        ds = KubernetesDatastore(node_name="n0", kubeconfig="unused", moves=Moves())
        ds._on_list(MESHCONFIGS, [])
        objs: dict[str, dict[str, Any]] = {}
        rv = 1
        for _ in range(25):
            rv += 1
            name = f"n{rng.randrange(6)}"
            if rng.random() < 0.1:
                objs = {n: _node(n, rv, i) for i, n in enumerate(rng.sample(sorted(objs) or ["n1"], 1))}
                ds._on_list(NODES, list(objs.values()))
            elif rng.random() < 0.3:
                ds._on_event(NODES, "DELETED", objs.pop(name, _node(name, rv, 9)))
            else:
                objs[name] = _node(name, rv, rng.randrange(4))
                ds._on_event(NODES, rng.choice(["ADDED", "MODIFIED"]), objs[name])
            fresh = KubernetesDatastore(node_name="n0", kubeconfig="unused", moves=Moves())
            fresh._on_list(MESHCONFIGS, [])
            fresh._on_list(NODES, list(objs.values()))
            assert ds.snapshot().nodes == fresh.snapshot().nodes, f"seed {seed}"
