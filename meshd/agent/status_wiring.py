"""Wires the status side of the agent (MeshNode, MeshConfig status, Events) to the datastore in use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from meshd.agent.candidates import Candidacy, NamedNodes
from meshd.agent.events import EventRecorder
from meshd.agent.meshconfig_report import MeshConfigReporter
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.passes import PassDatastore
from meshd.agent.settings import Settings
from meshd.agent.view import MeshView
from meshd.core.events import key_event
from meshd.core.ports import StatusStore

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def make_status_store(settings: Settings, datastore: PassDatastore | None = None) -> StatusStore:
    """The Kubernetes status store shares the Kubernetes datastore's connection, when it is given one
    (one client, one kubeconfig load, one connection pool to the API server per agent)."""
    file_dir = settings.datastore.file_dir
    if file_dir is not None:
        from meshd.datastore.file_status import FileStatusStore

        return FileStatusStore(file_dir)
    from meshd.datastore.k8s_status import DEFAULT_NAMESPACE, KubeStatusStore
    from meshd.datastore.kubernetes import KubernetesDatastore

    try:  # the Lease lives in the agent's own namespace (kube-system, or the Helm release's)
        namespace = SA_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        namespace = DEFAULT_NAMESPACE
    api = datastore.api if isinstance(datastore, KubernetesDatastore) else None
    return KubeStatusStore(kubeconfig=settings.datastore.kubeconfig, namespace=namespace, api=api)


def lease_candidacy(datastore: PassDatastore, me: str) -> Callable[[], bool]:
    """Whether this agent tries for the MeshConfig-status Lease every round: with Kubernetes, if it is one of
    the candidates; with the file datastore always (its `flock` costs the API server nothing)."""
    if isinstance(datastore, NamedNodes):
        return Candidacy(me, lambda: datastore.agent_names)
    return lambda: True


def key_rotated(events: EventRecorder, me: str) -> Callable[[str], None]:
    """What a completed key rotation calls: one KeyRotated Event on our Node, naming the new public key."""
    return lambda key: events.emit(key_event(me, key, rotated=True))


@contextlib.asynccontextmanager
async def status_reporting(
    settings: Settings, view: MeshView, datastore: PassDatastore, *, key_created: bool
) -> AsyncIterator[EventRecorder]:
    """Runs the MeshNode and MeshConfig-status reporters while the agent runs. Yields the recorder, whose
    `emit(key_event(..., rotated=True))` records key rotations (`key_rotated`)."""
    store = make_status_store(settings, datastore)
    events = EventRecorder(store)
    me, key = view.identity.name, view.identity.public_key
    if key_created and key is not None:
        events.emit(key_event(me, key.base64))
    reporters = (
        MeshNodeReporter(store, view, events),
        MeshConfigReporter(
            store,
            view,
            events,
            lambda: datastore.config_error,
            lambda: datastore.meshconfig_generation,
            contends=lease_candidacy(datastore, me),
        ),
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
