"""The Kubernetes status store on the datastore's connection: an agent talks to the API server through one
client (one kubeconfig load, one connection pool), and closing the status side leaves the datastore's
connection working. Against the fake API server over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshd.core.moves import Moves
from meshd.datastore.k8s_status import KubeStatusStore
from meshd.datastore.kubernetes import KubernetesDatastore
from tests.fakekube import FakeKube

LIMIT = 30.0  # a bound on every wait, never an assertion about time


async def test_the_status_store_works_through_the_datastores_connection(tmp_path: Path) -> None:
    with FakeKube() as kube:
        kube.put("nodes", {"metadata": {"name": "me", "uid": "u1"}})
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        ds = KubernetesDatastore(node_name="me", kubeconfig=kubeconfig, moves=Moves())
        await ds.start()
        try:
            while not ds.snapshot().synced:
                await asyncio.wait_for(ds.wait_changed(), LIMIT)
            # no kubeconfig of its own: connecting would fail, so every call below goes through `ds.api`
            store = KubeStatusStore(kubeconfig=tmp_path / "absent", api=ds.api)
            assert await store.hold_lease("me", duration=15)
            await store.write_meshnode("me", {"summary": {"peers": 0}})
            await store.close()
            assert kube.get("meshnodes", "me")["status"] == {"summary": {"peers": 0}}
            await ds.publish("me", {"meshd.io/capabilities": "vxlan"})  # the connection is still open
            assert kube.get("nodes", "me")["metadata"]["annotations"] == {"meshd.io/capabilities": "vxlan"}
        finally:
            await ds.close()


async def test_a_status_store_of_its_own_connects_from_its_kubeconfig(tmp_path: Path) -> None:
    """Without a shared connection (`meshd graph`), the store opens and closes its own."""
    with FakeKube() as kube:
        kube.put("nodes", {"metadata": {"name": "me", "uid": "u1"}})
        store = KubeStatusStore(kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig"))
        await store.write_meshnode("me", {"summary": {"peers": 1}})
        await store.close()
        assert kube.get("meshnodes", "me")["status"] == {"summary": {"peers": 1}}
