"""The Kubernetes datastore against the fake API server over real HTTP: list+watch, MeshConfig handling,
bookmarks and 410, retries, outages, and publish (one patch, none when equal, 409 retried, 403/404 not).
No wall-clock assertions: every wait is a bounded wait on a condition."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshd.core.codec import decode_node
from meshd.core.model import EncryptionMode, InvalidNode, MeshConfig, Node, Snapshot
from meshd.core.moves import Moves
from meshd.datastore.k8s_api import TransientApiError
from meshd.datastore.k8s_watch import Backoff, Reflector, with_retries
from meshd.datastore.kubernetes import KubernetesDatastore
from meshd.datastore.settings import WatchSettings
from meshd.errors import PermanentError, TransientError
from tests.fakekube import FakeKube

LIMIT = 30.0  # generous bound on every wait; never an assertion about time
KEY = "meshd.io/public-key"
PUB = "x" * 43 + "="


def _node(name: str, i: int, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"podCIDRs": [f"198.19.{i}.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": f"198.18.0.{i}"}]},
    }


def _config(mode: str, name: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"encryption": {"mode": mode}}}


def _names(snap: Snapshot) -> list[str]:
    return [n.name for n in snap.nodes]


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.1) as server:
        yield server


@pytest.fixture
def errors() -> list[str]:
    return []


@pytest.fixture
async def make_ds(
    kube: FakeKube, tmp_path: Path, errors: list[str]
) -> AsyncIterator[Callable[[], KubernetesDatastore]]:
    made: list[KubernetesDatastore] = []
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def make() -> KubernetesDatastore:
        ds = KubernetesDatastore(
            node_name="me",
            kubeconfig=kubeconfig,
            watch=WatchSettings(watch_timeout=5, backoff=Backoff(initial=0.05, maximum=0.3, jitter=0.05)),
            on_error=errors.append,
            moves=Moves(),
        )
        made.append(ds)
        return ds

    yield make
    for ds in made:
        await ds.close()


async def _started(make: Callable[[], KubernetesDatastore]) -> KubernetesDatastore:
    ds = make()
    await ds.start()
    await _until_changed(ds, lambda s: s.synced)
    return ds


async def _until_changed(ds: KubernetesDatastore, pred: Callable[[Snapshot], bool]) -> Snapshot:
    """Wake on wait_changed() until the snapshot satisfies `pred` (bounded)."""

    async def loop() -> Snapshot:
        while not pred(snap := ds.snapshot()):
            await ds.wait_changed()
        return snap

    return await asyncio.wait_for(loop(), LIMIT)


async def _until(cond: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not cond():  # noqa: ASYNC110 - conditions here have no event to wait on
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), LIMIT)


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


def _resume_point(ds: KubernetesDatastore, resource: str) -> str | None:
    """The resourceVersion the next watch of `resource` resumes from (None: a list comes first)."""
    return next(r.resource_version for r in ds._reflectors if r.resource == resource)


async def test_bookmarks_let_a_resumed_watch_survive_compaction(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore]
) -> None:
    kube.put("nodes", _node("a", 1))
    ds = await _started(make_ds)
    for i in range(5):  # writes the node watch never sees: only bookmarks move its resume point
        kube.put("meshconfigs", _config("Enabled", name=f"other-{i}"))
    target = kube.store.rv
    await _until(lambda: int(_resume_point(ds, "nodes") or 0) >= target)
    lists = kube.count("list", "nodes")
    kube.compact()
    kube.pause()  # drops the watch streams: the adapter must resume from its bookmark
    kube.resume()
    kube.put("nodes", _node("late", 5))
    await _until_changed(ds, lambda s: _names(s) == ["a", "late"])
    assert kube.count("list", "nodes") == lists, "resumed from the bookmark: no 410, no relist"


async def test_expired_resume_point_relists(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    kube.put("nodes", _node("b", 2))
    ds = await _started(make_ds)
    lists = kube.count("list", "nodes")
    kube.pause()
    kube.remove("nodes", "b")  # an event the adapter cannot see before the compaction
    kube.put("nodes", _node("c", 3))
    kube.compact()
    kube.resume()
    snap = await _until_changed(ds, lambda s: _names(s) == ["a", "c"])
    assert snap.synced
    assert kube.count("list", "nodes") > lists
    assert "expired" in errors


async def test_server_errors_are_retried(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    kube.fail_next(3, 500, verb="list", resource="nodes")
    kube.fail_next(2, 429, retry_after=0.1, verb="list", resource="meshconfigs")
    ds = await _started(make_ds)
    assert _names(ds.snapshot()) == ["a"]
    assert errors.count("server") == 3
    assert errors.count("throttled") == 2


async def test_retry_after_sets_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    answers: list[Exception | None] = [
        TransientApiError(429, "TooManyRequests", "slow down", retry_after=7),
        TransientApiError(503, "ServiceUnavailable", "busy"),
        None,
    ]

    async def call() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "done"

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    backoff = Backoff(initial=0.5, maximum=2, jitter=0.1)
    assert await with_retries(call, backoff, what="test", on_error=lambda _: None) == "done"
    assert delays[0] == 7, "a 429's Retry-After sets the delay"
    assert 0 < delays[1] <= 2.1, "a 5xx without Retry-After backs off exponentially, capped"


async def test_outage_then_catch_up(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.put("nodes", _node("a", 1))
    ds = await _started(make_ds)
    kube.pause()
    kube.put("nodes", _node("meanwhile", 2))
    await _until(lambda: errors.count("connection") >= 3)
    assert ds.failure is None, "connection errors never stop the watch"
    kube.resume()
    await _until_changed(ds, lambda s: _names(s) == ["a", "meanwhile"])


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


async def test_forbidden_list_is_a_clear_failure_retried_until_it_passes(
    kube: FakeKube, make_ds: Callable[[], KubernetesDatastore], errors: list[str]
) -> None:
    kube.fail_next(2, 403, verb="list", resource="nodes")
    ds = make_ds()
    await ds.start()
    await _until(lambda: ds.failure is not None)
    assert "nodes: 403" in (ds.failure or "")
    assert not ds.snapshot().synced, "without the node list nothing may be garbage-collected"
    assert "forbidden" in errors
    await _until(lambda: ds.snapshot().synced)  # RBAC fixed (or the API server's caches synced)
    assert ds.failure is None
    assert kube.count("list", "nodes") == 3, "two refusals, then the list that passed"


async def test_publish_for_a_missing_node_says_so(make_ds: Callable[[], KubernetesDatastore]) -> None:
    ds = await _started(make_ds)
    with pytest.raises(PermanentError, match=r"^404 .*publishing annotations of node me: "):
        await ds.publish("me", {KEY: PUB})


class ScriptedApi:
    """A KubeApi stand-in whose watch streams are scripted, to feed the reflector what no sane server
    sends (the fake API server only sends well-formed events)."""

    def __init__(self, streams: list[list[Any]]) -> None:
        self.streams, self.lists = streams, 0

    async def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return [_node(f"n{self.lists}", self.lists)], str(self.lists * 100)

    async def watch(
        self, resource: str, resource_version: str, *, server_timeout: int, on_open: Callable[[], None]
    ) -> AsyncIterator[Any]:
        on_open()
        for event in self.streams.pop(0) if self.streams else []:
            yield event
        if not self.streams:
            await asyncio.Event().wait()  # then a quiet, open stream


@pytest.mark.parametrize(
    "garbage",
    [
        {"type": "ADDED", "object": {"metadata": "not-a-dict"}},
        {"type": "ERROR", "object": {"code": "not-a-number"}},
        {"type": "MODIFIED"},
        "not-an-event",
    ],
    ids=["metadata-not-a-dict", "error-code-not-a-number", "no-object", "not-a-dict"],
)
async def test_a_malformed_watch_event_relists_instead_of_killing_the_watch(garbage: Any) -> None:

    api = ScriptedApi([[garbage]])
    listed: list[list[str]] = []
    events: list[tuple[str, str]] = []
    reflector = Reflector(
        api,  # type: ignore[arg-type]
        "nodes",
        on_list=lambda items: listed.append([i["metadata"]["name"] for i in items]),
        on_event=lambda kind, obj: events.append((obj["metadata"]["name"], kind)),
        on_error=lambda kind: None,
        backoff=Backoff(initial=0.01, maximum=0.05, jitter=0),
        watch_timeout=60,
        resync=0,
    )
    task = asyncio.create_task(reflector.run())
    try:
        await _until(lambda: len(listed) >= 2)
    finally:
        task.cancel()
    assert listed[:2] == [["n1"], ["n2"]] and reflector.failure is None


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
