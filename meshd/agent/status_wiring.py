"""Wires the status side of the agent (MeshNode, MeshConfig status, Events) to the datastore in use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from meshd.agent.events import EventRecorder
from meshd.agent.meshconfig_report import MeshConfigReporter
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.passes import PassDatastore
from meshd.agent.settings import Settings
from meshd.agent.view import MeshView
from meshd.core.events import key_event
from meshd.core.ports import StatusStore

if TYPE_CHECKING:
    from meshd.datastore.k8s_api import KubeApi

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def make_status_store(
    settings: Settings, generation: Callable[[], int | None] | None = None, api: KubeApi | None = None
) -> StatusStore:
    """`generation`: the MeshConfig's generation as the Kubernetes datastore watches it (saves a read);
    `api`: the Kubernetes datastore's connection, shared (no second client, kubeconfig load, TLS session)."""
    file_dir = settings.datastore.file_dir
    if file_dir is not None:
        from meshd.datastore.file_status import FileStatusStore

        return FileStatusStore(file_dir)
    from meshd.datastore.k8s_status import DEFAULT_NAMESPACE, KubeStatusStore

    try:  # the Lease lives in the agent's own namespace (kube-system, or the Helm release's)
        namespace = SA_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        namespace = DEFAULT_NAMESPACE
    return KubeStatusStore(
        kubeconfig=settings.datastore.kubeconfig,
        namespace=namespace,
        generation=generation,
        api=api,
    )


def _watched_generation(datastore: PassDatastore) -> Callable[[], int | None] | None:
    """The MeshConfig generation as the datastore's watch saw it (Kubernetes), else None (read it)."""
    if not hasattr(datastore, "meshconfig_generation"):
        return None
    return lambda: getattr(datastore, "meshconfig_generation", None)


def key_rotated(events: EventRecorder, me: str) -> Callable[[str], None]:
    """What a completed key rotation calls: one KeyRotated Event on our Node, naming the new public key."""
    return lambda key: events.emit(key_event(me, key, rotated=True))


@contextlib.asynccontextmanager
async def status_reporting(
    settings: Settings, view: MeshView, datastore: PassDatastore, *, key_created: bool
) -> AsyncIterator[EventRecorder]:
    """Runs the MeshNode and MeshConfig-status reporters while the agent runs. Yields the recorder, whose
    `emit(key_event(..., rotated=True))` records key rotations (`key_rotated`)."""
    store = make_status_store(settings, _watched_generation(datastore), getattr(datastore, "api", None))
    events = EventRecorder(store)
    me, key = view.identity.name, view.identity.public_key
    if key_created and key is not None:
        events.emit(key_event(me, key.base64))
    reporters = (
        MeshNodeReporter(store, view, events),
        MeshConfigReporter(store, view, events, lambda: datastore.config_error),
    )
    tasks = [asyncio.create_task(r.run(), name=type(r).__name__) for r in reporters]
    try:
        yield events
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await store.close()
