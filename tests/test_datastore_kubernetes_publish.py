"""The Kubernetes datastore publishes our annotations: one patch, none when equal, 409 retried against the
fresh object, 403/404 not; only our node and our keys; others' annotations kept. No wall-clock
assertions: every wait is a bounded wait on a condition."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from meshd.core.codec import decode_node
from meshd.datastore.kubernetes import KubernetesDatastore
from meshd.errors import PermanentError, TransientError
from tests.fakekube import FakeKube
from tests.support.kubeds import KEY, PUB, errors_fixture, kube_fixture, make_ds_fixture  # noqa: F401 - fixtures
from tests.support.kubeds import node as _node
from tests.support.kubeds import started as _started


async def test_publish_patches_once_and_not_when_equal(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("me", 1, **{"other.io/keep": "yes", "meshd.io/endpoint": "198.18.0.1:51820"}))
    ds = await _started(make_ds)
    await ds.publish("me", {KEY: PUB, "meshd.io/capabilities": "wireguard"})
    assert kube.count("patch", "nodes", "me") == 1
    await ds.publish("me", {KEY: PUB, "meshd.io/capabilities": "wireguard"})
    assert kube.count("patch", "nodes", "me") == 1, "an equal publish sends no request"
    await ds.publish("me", {"meshd.io/endpoint": None})
    assert kube.count("patch", "nodes", "me") == 2
    annotations = kube.get("nodes", "me")["metadata"]["annotations"]
    assert annotations == {"other.io/keep": "yes", KEY: PUB, "meshd.io/capabilities": "wireguard"}


async def test_publish_conflict_is_retried_against_the_fresh_object(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("me", 1))
    ds = await _started(make_ds)
    kube.touch_before_next("patch", "nodes", "me")  # someone writes the node between our read and patch
    await ds.publish("me", {KEY: PUB})
    assert kube.count("patch", "nodes", "me") == 2
    annotations = kube.get("nodes", "me")["metadata"]["annotations"]
    assert annotations[KEY] == PUB
    assert "fakekube/touched" in annotations, "the other writer's change is kept"


@pytest.mark.parametrize("status", [403, 404], ids=["forbidden", "not-found"])
async def test_publish_client_errors_are_not_retried(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], status: int
) -> None:
    kube.put("nodes", _node("me", 1))
    ds = await _started(make_ds)
    kube.fail_next(1, status, verb="patch")
    with pytest.raises(PermanentError, match=rf"^{status} .*node me: ") as exc:
        await ds.publish("me", {KEY: PUB})
    assert not isinstance(exc.value, TransientError)
    assert kube.count("patch", "nodes", "me") == 1


async def test_publish_refuses_other_nodes_and_foreign_keys(
    make_ds: Callable[[], KubernetesDatastore],
) -> None:
    ds = await _started(make_ds)
    with pytest.raises(PermanentError, match="other"):
        await ds.publish("other", {KEY: PUB})
    with pytest.raises(PermanentError, match=r"example\.com/x"):
        await ds.publish("me", {"example.com/x": "1"})


async def test_publish_for_a_missing_node_says_so(make_ds: Callable[[], KubernetesDatastore]) -> None:
    ds = await _started(make_ds)
    with pytest.raises(PermanentError, match=r"^404 .*publishing annotations of node me: "):
        await ds.publish("me", {KEY: PUB})


async def test_a_real_nodes_bulk_changes_nothing_the_agent_reads(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    """Nodes are kept trimmed to what the codec and publish read; a Node as a kubelet writes it (managed
    fields, images, conditions, a legacy podCIDR) decodes to the same record as the bare one, and our
    publish still guards on its resourceVersion and keeps others' annotations."""
    bare = _node("b", 2, **{"example.com/owner": "ops", KEY: PUB})
    bare["metadata"]["labels"] = {"pool": "x"}
    bulky = copy.deepcopy(bare)
    bulky["metadata"] |= {"managedFields": [{"manager": "kubelet"}] * 50, "uid": "u"}
    bulky["spec"] |= {"podCIDR": "198.19.2.0/24", "providerID": "kind://b"}
    bulky["status"] |= {"images": [{"names": [f"img{i}"], "sizeBytes": i} for i in range(200)],
                        "conditions": [{"type": "Ready", "status": "True"}]}  # fmt: skip
    me = _node("me", 1, **{"example.com/owner": "ops"})
    me["status"]["images"] = bulky["status"]["images"]
    kube.put("nodes", bulky)
    kube.put("nodes", me)
    ds = await _started(make_ds)
    (b,) = [n for n in ds.snapshot().nodes if n.name == "b"]
    assert b == decode_node(bare, published_underlay=True)
    await ds.publish("me", {KEY: PUB})
    assert kube.get("nodes", "me")["metadata"]["annotations"] == {"example.com/owner": "ops", KEY: PUB}
