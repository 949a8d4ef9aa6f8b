"""The fake API server, driven by the real (sync) `kubernetes` client over real HTTP: it must behave like a
kube-apiserver where meshd depends on it (resourceVersion, 409s, patch flavours, watch replay, bookmarks,
410 Gone, timeouts) and its control hooks must do what they say."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.fakekube import FakeKube

GROUP, VERSION, PLURAL = "meshd.io", "v1alpha1", "meshconfigs"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(kube: FakeKube, tmp_path: Path) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(
        config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), client_configuration=cfg
    )
    cfg.retries = 0  # urllib3 would otherwise retry a 429 that has Retry-After by itself
    api_client = client.ApiClient(cfg)
    yield api_client
    api_client.close()


def _node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def _core(api: client.ApiClient) -> Any:
    """CoreV1Api, as Any: these tests send raw JSON dicts (as meshd does) where the client's annotations
    ask for V1Node models, and read model fields the annotations mark Optional."""
    return client.CoreV1Api(api)


def _custom(api: client.ApiClient) -> Any:
    """CustomObjectsApi, as Any: custom objects come back as plain dicts, annotated `object`."""
    return client.CustomObjectsApi(api)


def _status(exc: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    assert exc.value.body is not None, "the API error carries no Status body"
    return exc.value.status, json.loads(exc.value.body)["reason"]


def test_create_get_list_with_resource_versions(api: client.ApiClient) -> None:
    core = _core(api)
    a = core.create_node(_node("a", pool="x"))
    core.create_node(_node("b", pool="y"))
    assert core.read_node("a").metadata.resource_version == a.metadata.resource_version
    listed = core.list_node()
    assert [n.metadata.name for n in listed.items] == ["a", "b"]
    assert int(listed.metadata.resource_version) > int(a.metadata.resource_version)
    assert [n.metadata.name for n in core.list_node(label_selector="pool=y").items] == ["b"]
    assert [n.metadata.name for n in core.list_node(field_selector="metadata.name=a").items] == ["a"]
    with pytest.raises(ApiException) as exc:
        core.create_node(_node("a"))
    assert _status(exc) == (409, "AlreadyExists")
    core.delete_node("a")
    with pytest.raises(ApiException) as exc:
        core.read_node("a")
    assert _status(exc) == (404, "NotFound")


def test_update_with_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    core = _core(api)
    first = core.create_node(_node("a")).to_dict()
    core.patch_node("a", {"metadata": {"labels": {"moved": "on"}}})
    stale = {"metadata": {"name": "a", "resourceVersion": first["metadata"]["resource_version"]}}
    with pytest.raises(ApiException) as exc:
        core.replace_node("a", stale)
    assert _status(exc) == (409, "Conflict")
    fresh = core.read_node("a").metadata.resource_version
    done = core.replace_node("a", {"metadata": {"name": "a", "resourceVersion": fresh, "labels": {"k": "v"}}})
    assert done.metadata.labels == {"k": "v"}


def test_meshconfig_generation_moves_with_spec_only(api: client.ApiClient) -> None:
    custom = _custom(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MeshConfig", "metadata": {"name": "default"}}
    made = custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, {**body, "spec": {"fallback": "VXLAN"}}
    )
    assert made["metadata"]["generation"] == 1
    labelled = custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, "default", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    changed = custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, "default", {"spec": {"fallback": "None"}}
    )
    assert changed["metadata"]["generation"] == 2
    assert custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "default")["spec"] == {"fallback": "None"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/merge-patch+json", {"metadata": {"annotations": {"k": "v", "gone": None}}}),
        ("application/strategic-merge-patch+json", {"metadata": {"annotations": {"k": "v", "gone": None}}}),
        (
            "application/json-patch+json",
            [
                {"op": "test", "path": "/metadata/annotations/gone", "value": "x"},
                {"op": "remove", "path": "/metadata/annotations/gone"},
                {"op": "add", "path": "/metadata/annotations/k", "value": "v"},
            ],
        ),
    ],
    ids=["merge", "strategic", "json-patch"],
)
def test_patch_flavours(api: client.ApiClient, content_type: str, body: Any) -> None:
    core = _core(api)
    core.create_node({**_node("a"), "metadata": {"name": "a", "annotations": {"gone": "x", "kept": "y"}}})
    patched = core.patch_node("a", body, _content_type=content_type)
    assert patched.metadata.annotations == {"k": "v", "kept": "y"}


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json-patch+json", [{"op": "test", "path": "/metadata/name", "value": "b"}], 422),
        ("application/json-patch+json", [{"op": "remove", "path": "/metadata/labels/none"}], 422),
        ("application/merge-patch+json", {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}, 409),
    ],
    ids=["failed-test-op", "missing-path", "stale-precondition"],
)
def test_patch_failures(api: client.ApiClient, content_type: str, body: Any, expected: int) -> None:
    core = _core(api)
    before = core.create_node(_node("a"))
    with pytest.raises(ApiException) as exc:
        core.patch_node("a", body, _content_type=content_type)
    assert exc.value.status == expected
    assert core.read_node("a").metadata.resource_version == before.metadata.resource_version


def test_watch_replays_from_resource_version_then_goes_live(kube: FakeKube, api: client.ApiClient) -> None:
    core = _core(api)
    start = core.create_node(_node("a")).metadata.resource_version
    core.create_node(_node("b"))
    core.patch_node("a", {"metadata": {"labels": {"x": "y"}}})
    core.delete_node("b")
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for ev in w.stream(core.list_node, resource_version=start, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            kube.put("nodes", _node("c"))  # a live event after the replay
        if len(seen) == 4:
            w.stop()
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]


def test_watch_bookmarks_carry_current_resource_version_and_timeout_ends(api: client.ApiClient) -> None:
    core = _core(api)
    node_rv = core.create_node(_node("a")).metadata.resource_version
    custom = _custom(api)
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {"metadata": {"name": "other"}, "spec": {}})
    w = watch.Watch()
    events = list(
        w.stream(core.list_node, resource_version=node_rv, allow_watch_bookmarks=True, timeout_seconds=1)
    )
    assert events, "the stream ended without any bookmark"
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert w.resource_version is not None, "the watch saw no resourceVersion"
    assert int(w.resource_version) > int(node_rv), "bookmarks must carry the store's current resourceVersion"


def test_compaction_makes_old_watch_410_but_not_a_bookmark_resume(
    kube: FakeKube, api: client.ApiClient
) -> None:
    core = _core(api)
    old = core.create_node(_node("a")).metadata.resource_version
    core.create_node(_node("b"))
    compacted = kube.compact()
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(core.list_node, resource_version=old, timeout_seconds=2))
    assert exc.value.status == 410
    events = list(watch.Watch().stream(core.list_node, resource_version=str(compacted), timeout_seconds=1))
    assert events == []


def test_fail_next_injects_errors_with_retry_after(kube: FakeKube, api: client.ApiClient) -> None:
    core = _core(api)
    kube.fail_next(1, 429, retry_after=2, verb="list")
    kube.fail_next(1, 500, verb="list")
    with pytest.raises(ApiException) as exc:
        core.list_node()
    assert exc.value.status == 429
    assert exc.value.headers is not None
    assert exc.value.headers["Retry-After"] == "2"
    with pytest.raises(ApiException) as exc:
        core.list_node()
    assert exc.value.status == 500
    assert core.list_node().items == []


def test_pause_refuses_then_resume_serves(kube: FakeKube, api: client.ApiClient) -> None:
    core = _core(api)
    kube.pause()
    with pytest.raises((urllib3.exceptions.HTTPError, ConnectionError)):
        core.list_node(_request_timeout=5)
    kube.resume()
    assert core.list_node().items == []


def test_counts_and_http_control_endpoints(kube: FakeKube, api: client.ApiClient) -> None:
    core = _core(api)
    core.create_node(_node("a"))
    core.patch_node("a", {"metadata": {"labels": {"x": "y"}}})
    core.read_node("a")

    def control(op: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(f"{kube.url}/_control/{op}", data=json.dumps(body or {}).encode())
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    assert kube.count("patch", "nodes", "a") == 1
    assert control("count", {"verb": "get", "resource": "nodes"}) == {"count": 1}
    control("reset-counts")
    assert kube.count() == 0
    control("fail", {"count": 1, "status": 503})
    with pytest.raises(ApiException) as exc:
        core.read_node("a")
    assert exc.value.status == 503
    control("touch", {"verb": "patch", "resource": "nodes", "name": "a"})
    rv = core.read_node("a").metadata.resource_version
    with pytest.raises(ApiException) as exc:
        core.patch_node("a", {"metadata": {"resourceVersion": rv, "labels": {"z": "1"}}})
    assert exc.value.status == 409, "someone else modified the node between our read and our patch"
    assert control("compact")["compacted"] >= int(rv)
    kube.pause()
    put = control("put", {"resource": "nodes", "object": _node("b", pool="z")})
    kube.resume()
    assert core.read_node("b").metadata.resource_version == put["metadata"]["resourceVersion"]


def test_runs_standalone_with_a_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakekube", "--port", "0", "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        with client.ApiClient(cfg) as api_client:
            _core(api_client).create_node(_node("a"))
        req = urllib.request.Request(f"{url}/_control/count?verb=create", data=b"{}")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read()) == {"count": 1}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
