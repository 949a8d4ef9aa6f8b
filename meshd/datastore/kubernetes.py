"""The Kubernetes datastore: Nodes (core/v1) and the MeshConfig named `default` (meshd.io/v1alpha1).

Two reflectors (k8s_watch.py) LIST then WATCH each collection and keep the raw objects by name; every
change only sets the dirty flag. `snapshot()` decodes with the codec (cached per name and resourceVersion).
`publish()` writes our own node's `meshd.io/*` annotations in one merge patch guarded by the
resourceVersion we compared against; a 409 is retried against the fresh object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from meshd.core.codec import decode_meshconfig, decode_node
from meshd.core.model import InvalidNode, IPAddress, MeshConfig, NodeRecord, Snapshot
from meshd.core.moves import Moves
from meshd.datastore.k8s_api import MESHCONFIG_NAME, MESHCONFIGS, NODES, KubeApi, Obj, PermanentApiError
from meshd.datastore.k8s_nodes import running_agent, slim
from meshd.datastore.k8s_watch import Reflector, error_kind, with_retries
from meshd.datastore.records import NamedRecords
from meshd.datastore.settings import WatchSettings
from meshd.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "meshd.io/"


def _ignore(kind: str) -> None:
    """The default `on_error`: metrics are optional."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when `new` is an earlier version than `old`. resourceVersions are opaque, but the API server
    issues increasing integers; compare only when both are, so a patch answer is not undone by a late event."""
    a, b = str(_meta(new).get("resourceVersion", "")), str(_meta(old).get("resourceVersion", ""))
    return a.isdigit() and b.isdigit() and int(a) < int(b)


def _changes(node: Mapping[str, Any], wanted: Mapping[str, str | None]) -> dict[str, str | None]:
    current = _meta(node).get("annotations") or {}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


class KubernetesDatastore:
    def __init__(
        self,
        *,
        node_name: str,
        kubeconfig: Path | str | None = None,
        underlay_override: IPAddress | None = None,
        watch: WatchSettings | None = None,
        on_error: Callable[[str], None] = _ignore,
        moves: Moves,
    ) -> None:
        """`kubeconfig` None: in-cluster service account. `watch`: watch and retry timings.
        `on_error(kind)` counts API errors for metrics; `moves` (the agent's) is told which records moved."""
        self.node_name = node_name
        self._kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self._underlay_override = underlay_override
        self._watch = watch = watch or WatchSettings()
        self._backoff = watch.backoff
        self._on_error = on_error
        self._api: KubeApi | None = None
        self._nodes: dict[str, Obj] = {}
        self._records: dict[str, tuple[str, NodeRecord]] = {}  # name -> (resourceVersion, decoded)
        self._named = NamedRecords(self._record, moves, running_agent)  # in name order, placed where touched
        self._config = MeshConfig()
        self._config_key: str | None = None  # resourceVersion of the MeshConfig last decoded, "" if none
        self._config_good = False  # a MeshConfig (or its absence) decoded: else no first sync (fail closed)
        self.config_error: str | None = None
        """Why the latest MeshConfig was rejected (the previous one stays in force), or None."""
        self.meshconfig_generation: int | None = None
        """The latest MeshConfig's `metadata.generation`, rejected or not; None when there is none."""
        self._listed: set[str] = set()
        self._reflectors: list[Reflector] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._snapshot: Snapshot | None = None  # the last snapshot, shared until something changes

    @property
    def api(self) -> KubeApi | None:
        """The connection to the API server, once started (the status store shares it)."""
        return self._api

    @property
    def agent_names(self) -> tuple[int, Sequence[str]]:
        """Names of the last snapshot's nodes that run meshd (k8s_nodes.running_agent), after their count."""
        return self._named.agents_changed, self._named.agents

    @property
    def failure(self) -> str | None:
        """Why a watch is not working (a 401/403, retried slowly; any other 4xx stops it for good), or None."""
        failed = [f"{r.resource}: {r.failure}" for r in self._reflectors if r.failure is not None]
        return "; ".join(failed) or None

    async def start(self) -> None:
        self._api = await KubeApi.connect(self._kubeconfig, request_timeout=self._watch.request_timeout)
        for resource in (NODES, MESHCONFIGS):
            reflector = Reflector(
                self._api,
                resource,
                on_list=lambda items, r=resource: self._on_list(r, items),  # type: ignore[misc]
                on_event=lambda kind, obj, r=resource: self._on_event(r, kind, obj),  # type: ignore[misc]
                on_error=self._on_error,
                backoff=self._backoff,
                watch_timeout=self._watch.watch_timeout,
                resync=self._watch.relist,
            )
            task = asyncio.create_task(reflector.run(), name=f"k8s-watch-{resource}")
            task.add_done_callback(self._task_done)
            self._reflectors.append(reflector)
            self._tasks.append(task)

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self._build_snapshot()
        return self._snapshot

    def _touch(self) -> None:
        """Something the snapshot holds changed: the next one is built afresh, and the loop wakes."""
        self._snapshot = None
        self._changed.set()

    def _build_snapshot(self) -> Snapshot:
        records = self._named.records(self._nodes)
        for gone in self._records.keys() - self._nodes.keys():
            del self._records[gone]
        synced = self._listed >= {NODES, MESHCONFIGS} and self._config_good
        return Snapshot(records, self._config, synced=synced)

    async def wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def publish(self, node_name: str, annotations: Mapping[str, str | None]) -> None:
        if node_name != self.node_name:
            raise PermanentError(f"refusing to annotate node {node_name!r}: this agent is {self.node_name!r}")
        foreign = sorted(k for k in annotations if not k.startswith(PREFIX))
        if foreign:
            raise PermanentError(f"refusing to publish annotations outside {PREFIX}: {', '.join(foreign)}")
        api, what = self._require_api(), f"publishing annotations of node {node_name}"
        current: Mapping[str, Any] | None = self._nodes.get(node_name)
        try:
            for _ in range(self._watch.publish_attempts):
                if current is None:
                    current = await self._request(lambda: api.get_node(node_name), what)
                changes = _changes(current, annotations)
                if not changes:
                    log.debug("annotations of node %s unchanged", node_name)
                    return
                rv = _meta(current).get("resourceVersion")
                body = {"metadata": {"resourceVersion": rv, "annotations": changes}}
                try:
                    updated = await self._request(
                        lambda body=body: api.patch_node(node_name, body),  # type: ignore[misc]
                        what,
                    )
                except PermanentApiError as exc:
                    if exc.status != 409:
                        raise
                    log.info(
                        "node %s changed under our patch (409): retrying against the fresh object", node_name
                    )
                    current = None
                    continue
                log.info("published annotations of node %s: %s", node_name, ", ".join(sorted(changes)))
                self._remember(updated)
                return
        except TransientError as exc:
            raise TransientError(f"{what}: {exc}") from exc
        raise TransientError(f"{what}: still conflicting after {self._watch.publish_attempts} attempts")

    async def _request(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """`call` with the usual retries; a permanent API error says `what` was being done."""
        try:
            return await with_retries(call, self._backoff, what=what, on_error=self._on_error, attempts=3)
        except PermanentApiError as exc:
            self._on_error(error_kind(exc))
            raise PermanentApiError(exc.status, exc.reason, f"{what}: {exc.message}") from exc

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._api is not None:
            await self._api.close()
            self._api = None

    # -- internals
    def _require_api(self) -> KubeApi:
        if self._api is None:
            raise PermanentError("the Kubernetes datastore is not started")
        return self._api

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._changed.set()  # let the loop look at `failure`

    def _record(self, name: str, obj: Obj) -> NodeRecord:
        rv = str(_meta(obj).get("resourceVersion", ""))
        cached = self._records.get(name)
        if cached is not None and cached[0] == rv:
            return cached[1]
        override = self._underlay_override if name == self.node_name else None
        try:
            record: NodeRecord = decode_node(
                obj, underlay_override=override, published_underlay=name != self.node_name
            )
        except Exception as exc:  # the codec promises not to raise; one bad node must not stop the agent
            log.exception("decoding node %s failed", name)
            record = InvalidNode(name, "bad-record", f"node {name} could not be decoded: {exc}")
        self._records[name] = (rv, record)
        return record

    def _remember(self, obj: Obj) -> None:
        obj = slim(obj)
        name = str(_meta(obj).get("name", ""))
        old = self._nodes.get(name)
        if name and (old is None or not _older(obj, old)):
            self._nodes[name] = obj
            self._named.touch(name)
            self._touch()

    def _on_list(self, resource: str, items: list[Obj]) -> None:
        if resource == NODES:
            fresh = {str(_meta(o).get("name")): slim(o) for o in items if _meta(o).get("name")}
            changed = fresh != self._nodes
            self._nodes = fresh
            self._named.touch()
        else:
            found = next((o for o in items if _meta(o).get("name") == MESHCONFIG_NAME), None)
            changed = self._set_config(found)
        if changed or resource not in self._listed:
            self._listed.add(resource)
            self._touch()

    def _on_event(self, resource: str, kind: str, obj: Obj) -> None:
        name = str(_meta(obj).get("name", ""))
        if resource == NODES:
            if kind == "DELETED":
                if self._nodes.pop(name, None) is not None:
                    log.info("node %s deleted", name)
                    self._named.touch(name)
                    self._touch()
            else:
                self._remember(obj)
        elif name == MESHCONFIG_NAME and self._set_config(None if kind == "DELETED" else obj):
            self._touch()

    def _set_config(self, obj: Obj | None) -> bool:
        """Decode a new MeshConfig version; a bad one leaves the previous one in force. True if it changed."""
        key = str(_meta(obj).get("resourceVersion", "?")) if obj is not None else ""
        if key == self._config_key:
            return False
        self._config_key = key
        generation = _meta(obj).get("generation") if obj is not None else None
        self.meshconfig_generation = None if obj is None else generation if isinstance(generation, int) else 0
        try:
            config = decode_meshconfig(obj)
        except ConfigError as exc:
            self.config_error = f"MeshConfig {MESHCONFIG_NAME} (resourceVersion {key}): {exc}"
            log.error("rejected %s; the previous configuration stays in force", self.config_error)
            return True
        self.config_error, self._config_good = None, True
        if obj is None:
            log.info("no MeshConfig %s: defaults apply", MESHCONFIG_NAME)
        else:
            log.info("MeshConfig %s: mode %s, fallback %s", MESHCONFIG_NAME, config.mode, config.fallback)
        self._config = config
        return True
