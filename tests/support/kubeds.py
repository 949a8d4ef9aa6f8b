"""Shared by the Kubernetes datastore tests: the fake API server, a datastore factory on it, Node and
MeshConfig objects as the API serves them, and bounded waits on conditions (never on wall-clock time).
A test module imports the three fixtures (`kube`, `errors`, `make_ds`) by their *_fixture names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshd.core.model import Snapshot
from meshd.core.moves import Moves
from meshd.datastore.k8s_watch import Backoff
from meshd.datastore.kubernetes import KubernetesDatastore
from meshd.datastore.settings import WatchSettings
from tests.fakekube import FakeKube

LIMIT = 30.0  # generous bound on every wait; never an assertion about time
KEY = "meshd.io/public-key"
PUB = "x" * 43 + "="


def node(name: str, i: int, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"podCIDRs": [f"198.19.{i}.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": f"198.18.0.{i}"}]},
    }


def config(mode: str, name: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"encryption": {"mode": mode}}}


def names(snap: Snapshot) -> list[str]:
    return [n.name for n in snap.nodes]


@pytest.fixture(name="kube")
def kube_fixture() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.1) as server:
        yield server


@pytest.fixture(name="errors")
def errors_fixture() -> list[str]:
    return []


@pytest.fixture(name="make_ds")
async def make_ds_fixture(
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


async def started(make: Callable[[], KubernetesDatastore]) -> KubernetesDatastore:
    ds = make()
    await ds.start()
    await until_changed(ds, lambda s: s.synced)
    return ds


async def until_changed(ds: KubernetesDatastore, pred: Callable[[Snapshot], bool]) -> Snapshot:
    """Wake on wait_changed() until the snapshot satisfies `pred` (bounded)."""

    async def loop() -> Snapshot:
        while not pred(snap := ds.snapshot()):
            await ds.wait_changed()
        return snap

    return await asyncio.wait_for(loop(), LIMIT)


async def until(cond: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not cond():  # noqa: ASYNC110 - conditions here have no event to wait on
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), LIMIT)
