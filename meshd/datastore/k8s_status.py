"""The Kubernetes status store: MeshNodes (`meshnodes.meshd.io`, cluster-scoped, owned by their Node), the
MeshConfig `default`'s status subresource, the Lease electing its writer, and core/v1 Events. Its own API
connection (the agent's credentials), so the datastore's list/watch machinery stays untouched. Every call
is one request; a failure raises (meshd.errors) and the caller tries again on its next round."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshd.core.meshnode import meshnode_object, rfc3339
from meshd.core.ports import EventRecord
from meshd.datastore.k8s_api import (
    MERGE_PATCH,
    MESHCONFIG_NAME,
    MESHNODES,
    PATHS,
    KubeApi,
    PermanentApiError,
)
from meshd.datastore.k8s_events import EVENT_NAMESPACE, event_name, event_object
from meshd.datastore.k8s_meshnodes import MeshNodeCache
from meshd.datastore.lease import Lease
from meshd.errors import PermanentError

DEFAULT_NAMESPACE = "kube-system"


def _events_path(name: str = "") -> str:
    return f"/api/v1/namespaces/{EVENT_NAMESPACE}/events" + (f"/{name}" if name else "")


class KubeStatusStore:
    def __init__(
        self, *, kubeconfig: Path | None, namespace: str = DEFAULT_NAMESPACE, api: KubeApi | None = None
    ) -> None:
        """`api`: the Kubernetes datastore's connection, shared (one client, one connection pool to the API
        server per agent) and left open by `close`; None: connect from `kubeconfig` on first use."""
        self._kubeconfig = kubeconfig
        self._namespace = namespace
        self._api: KubeApi | None = api
        self._shared = api is not None
        self._lease: Lease | None = None
        self._meshnodes: MeshNodeCache | None = None
        self._created: set[str] = set()
        self._uids: dict[tuple[str, str], str] = {}

    async def _connect(self) -> KubeApi:
        if self._api is None:
            self._api = await KubeApi.connect(self._kubeconfig)
        return self._api

    async def write_meshnode(self, name: str, status: Mapping[str, Any]) -> None:
        if name not in self._created:
            await self._create_meshnode(await self._connect(), name)
        try:
            await self._patch_status(MESHNODES, name, status)
        except PermanentApiError as exc:
            if exc.status == 404:  # deleted under us (by hand, or with a Node recreated): create it again
                self._created.discard(name)
                self._uids.pop(("Node", name), None)
            raise

    async def _create_meshnode(self, api: KubeApi, name: str) -> None:
        uid = await self._uid("Node", name)
        if uid is None:
            raise PermanentError(f"creating MeshNode {name}: node {name} does not exist")
        try:
            await api.call("POST", PATHS[MESHNODES], meshnode_object(name, uid))
        except PermanentApiError as exc:
            if exc.status != 409:  # 409: it exists (we restarted, or an earlier Node of this name left it)
                raise
            await self._own(api, name, uid)
        self._created.add(name)

    async def _own(self, api: KubeApi, name: str, uid: str, existing: dict[str, Any] | None = None) -> None:
        """An existing MeshNode owned by an earlier Node of the same name (deleted before the garbage
        collector got to its MeshNode) is handed to the current Node, so it goes with it."""
        if existing is None:
            existing = await api.call("GET", f"{PATHS[MESHNODES]}/{name}")
        owners = (existing.get("metadata") or {}).get("ownerReferences") or []
        if [o.get("uid") for o in owners if isinstance(o, dict)] != [uid]:
            meta = meshnode_object(name, uid)["metadata"]
            body = {"metadata": {"ownerReferences": meta["ownerReferences"]}}
            await api.call("PATCH", f"{PATHS[MESHNODES]}/{name}", body, content_type=MERGE_PATCH)

    async def _uid(self, kind: str, name: str) -> str | None:
        if (kind, name) not in self._uids:
            obj = await (
                self._get("Node", name) if kind == "Node" else self._get("meshconfigs", MESHCONFIG_NAME)
            )
            uid = str(((obj or {}).get("metadata") or {}).get("uid") or "")
            if not uid:
                return None
            self._uids[(kind, name)] = uid
        return self._uids[(kind, name)]

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A Node (`plural` "Node") or one of our objects; None when there is none."""
        api = await self._connect()
        try:
            if plural == "Node":
                return await api.get_node(name)
            return await api.call("GET", f"{PATHS[plural]}/{name}")
        except PermanentApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _patch_status(self, plural: str, name: str, status: Mapping[str, Any]) -> None:
        api = await self._connect()
        body = {"status": dict(status)}
        await api.write("PATCH", f"{PATHS[plural]}/{name}/status", body, content_type=MERGE_PATCH)

    async def read_meshnode(self, name: str) -> dict[str, Any] | None:
        obj = await self._get(MESHNODES, name)
        if obj is None:
            return None
        uid = await self._uid("Node", name)
        if uid is not None:  # kept as ours only once it is owned by the Node of this name that exists now
            await self._own(await self._connect(), name, uid, obj)
            self._created.add(name)
        status = obj.get("status")
        return status if isinstance(status, dict) else None

    async def list_meshnodes(self) -> list[dict[str, Any]]:
        if self._meshnodes is None:
            self._meshnodes = MeshNodeCache(await self._connect())
        return await self._meshnodes.items()

    async def hold_lease(self, holder: str, *, duration: float) -> bool:
        if self._lease is None:
            self._lease = Lease(await self._connect(), self._namespace)
        return await self._lease.hold(holder, duration=duration)

    async def write_meshconfig_status(self, status: Mapping[str, Any]) -> None:
        await self._patch_status("meshconfigs", MESHCONFIG_NAME, status)

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        api = await self._connect()
        uid = await self._uid(event.kind, event.name)
        body = event_object(event, count=count, first=rfc3339(first), last=rfc3339(last), uid=uid)
        try:
            await api.call("POST", _events_path(), body)
            return
        except PermanentApiError as exc:
            if exc.status != 409:
                raise
        # the same cause was recorded before (by us before a restart, or by an earlier lease holder)
        old = await api.call("GET", _events_path(event_name(event)))
        patch = {"count": max(count, int(old.get("count") or 0) + 1), "lastTimestamp": rfc3339(last)}
        await api.call("PATCH", _events_path(event_name(event)), patch, content_type=MERGE_PATCH)

    async def close(self) -> None:
        """Gives the lease up when this agent holds it (a rollout hands over at once), then disconnects."""
        if self._lease is not None and self._lease.held:
            with contextlib.suppress(Exception):
                await self._lease.release()
        if self._meshnodes is not None:
            await self._meshnodes.close()
        if self._api is not None and not self._shared:
            await self._api.close()
            self._api = None
