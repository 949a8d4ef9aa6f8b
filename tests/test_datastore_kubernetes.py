"""The Kubernetes datastore against the fake API server over real HTTP: what list+watch make of Nodes and
the MeshConfig (adds, changes, deletes, garbage, the config lifecycle, published underlay addresses), and
what a run loads. No wall-clock assertions: every wait is a bounded wait on a condition."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from meshd.core.model import EncryptionMode, InvalidNode, MeshConfig, Node
from meshd.datastore.kubernetes import KubernetesDatastore
from tests.fakekube import FakeKube
from tests.support.kubeds import KEY, PUB, errors_fixture, kube_fixture, make_ds_fixture  # noqa: F401 - fixtures
from tests.support.kubeds import config as _config
from tests.support.kubeds import names as _names
from tests.support.kubeds import node as _node
from tests.support.kubeds import started as _started
from tests.support.kubeds import until as _until
from tests.support.kubeds import until_changed as _until_changed


async def test_initial_list_gives_synced_snapshot(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("b", 2))
    kube.put("nodes", _node("a", 1))
    kube.put("meshconfigs", _config("Disabled"))
    ds = make_ds()
    assert not ds.snapshot().synced, "nothing listed yet"
    await ds.start()
    snap = await _until_changed(ds, lambda s: s.synced)
    assert _names(snap) == ["a", "b"]
    assert snap.nodes[0] == Node(
        "a", ipaddress.ip_address("198.18.0.1"), (ipaddress.ip_network("198.19.1.0/24"),)
    )
    assert snap.config.mode is EncryptionMode.DISABLED
    assert snap.config.generation == 1


async def test_node_add_modify_delete_and_garbage(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("a", 1))
    kube.put("nodes", _node("b", 2))
    ds = await _started(make_ds)
    kube.put("nodes", _node("c", 3))
    first = await _until_changed(ds, lambda s: _names(s) == ["a", "b", "c"])
    assert ds.snapshot() is first, "nothing changed: the same snapshot and records, shared, not rebuilt"
    kube.put("nodes", _node("a", 9))
    snap = await _until_changed(
        ds, lambda s: isinstance(s.nodes[0], Node) and s.nodes[0].pod_cidrs[0].network_address.packed[2] == 9
    )
    assert str(snap.nodes[0].underlay_ip) == "198.18.0.9"  # type: ignore[union-attr]
    kube.remove("nodes", "b")
    after = await _until_changed(ds, lambda s: _names(s) == ["a", "c"])
    assert after.nodes[1] is first.nodes[2], "an unchanged node keeps its decoded record"
    kube.put("nodes", _node("c", 3, **{KEY: "garbage"}))
    snap = await _until_changed(ds, lambda s: isinstance(s.nodes[1], InvalidNode))
    assert isinstance(snap.nodes[0], Node), "one bad node does not disturb the others"


async def test_meshconfig_lifecycle(kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]) -> None:
    ds = await _started(make_ds)
    assert ds.snapshot().config == MeshConfig(), "no MeshConfig: defaults"
    assert ds.meshconfig_generation is None
    kube.put("meshconfigs", _config("Disabled"))
    await _until_changed(ds, lambda s: s.config.mode is EncryptionMode.DISABLED)
    kube.put("meshconfigs", _config("Required"))
    snap = await _until_changed(ds, lambda s: s.config.mode is EncryptionMode.REQUIRED)
    assert snap.config.generation == 2
    kube.put("meshconfigs", _config("Bogus"))
    await _until(lambda: ds.config_error is not None)
    assert "Bogus" in (ds.config_error or "")
    assert ds.snapshot().config.mode is EncryptionMode.REQUIRED, "the previous good config stays in force"
    assert ds.meshconfig_generation == 3  # the status reports the rejected generation
    kube.put("meshconfigs", _config("Enabled", name="other"))  # only `default` counts
    kube.put("meshconfigs", _config("Disabled"))
    await _until_changed(ds, lambda s: s.config.mode is EncryptionMode.DISABLED)
    assert ds.config_error is None
    kube.remove("meshconfigs", "default")
    await _until_changed(ds, lambda s: s.config == MeshConfig())
    assert ds.meshconfig_generation is None


async def test_peers_published_underlay_wins_but_never_our_own_stale_copy(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    """Our InternalIP changed since we last published meshd.io/underlay-ip: we follow status.addresses
    (and our next publish removes the annotation); a peer's published address wins over its status."""
    kube.put("nodes", _node("me", 1, **{"meshd.io/underlay-ip": "198.18.9.1"}))
    kube.put("nodes", _node("peer", 2, **{"meshd.io/underlay-ip": "198.18.9.2"}))
    ds = await _started(make_ds)
    snap = await _until_changed(ds, lambda s: len(s.nodes) == 2)
    found = {n.name: str(n.underlay_ip) for n in snap.nodes if isinstance(n, Node)}
    assert found == {"me": "198.18.0.1", "peer": "198.18.9.2"}


async def test_no_first_sync_while_the_meshconfig_does_not_decode(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    """Defaults in place of a MeshConfig that does not decode could mean clear text where Required is meant."""
    kube.put("meshconfigs", _config("Bogus"))
    kube.put("nodes", _node("a", 1))
    ds = make_ds()
    await ds.start()
    await _until(lambda: ds.config_error is not None)  # the MeshConfig list is in
    snap = await _until_changed(ds, lambda s: _names(s) == ["a"])  # and the node list
    assert not snap.synced
    kube.put("meshconfigs", _config("Required"))
    snap = await _until_changed(ds, lambda s: s.synced)
    assert snap.config.mode is EncryptionMode.REQUIRED


LOADED = """
import asyncio, sys
from pathlib import Path
from meshd.core.moves import Moves
from meshd.datastore.kubernetes import KubernetesDatastore
from tests.fakekube import FakeKube

async def main(kubeconfig: Path) -> None:
    ds = KubernetesDatastore(node_name="me", kubeconfig=kubeconfig, moves=Moves())
    await ds.start()
    while not ds.snapshot().synced:
        await ds.wait_changed()
    await ds.publish("me", {"meshd.io/capabilities": "vxlan"})
    await ds.close()

with FakeKube() as kube:
    kube.put("nodes", {"metadata": {"name": "me"}})
    asyncio.run(main(kube.write_kubeconfig(Path(sys.argv[1]))))
    assert kube.get("nodes", "me")["metadata"]["annotations"] == {"meshd.io/capabilities": "vxlan"}
print(sorted(m for m in sys.modules if m.startswith("kubernetes.aio.client.api.")))
print(sum(m.startswith("kubernetes.aio.client.models.") for m in sys.modules))
print(sorted({m.split(".")[0] for m in sys.modules} & {"requests", "oauthlib", "urllib3", "websocket"}))
print(sorted(m for m in sys.modules if m.startswith(("kubernetes.client", "kubernetes.aio.watch"))))
"""


def test_the_datastore_loads_no_generated_api_or_model_modules(tmp_path: Path) -> None:
    """Memory: list, watch and publish go through the client's ApiClient with raw responses, so a run
    never imports the generated CoreV1Api (about 250 model modules, some 25 MB) or any model; nor the
    synchronous client the `kubernetes` package's own `__init__` loads (requests, urllib3, oauthlib,
    websocket: about 12 MB)."""
    out = subprocess.run(
        [sys.executable, "-c", LOADED, str(tmp_path / "kubeconfig")],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1], timeout=120,
    ).stdout.splitlines()  # fmt: skip
    assert out == ["[]", "0", "[]", "[]"]
