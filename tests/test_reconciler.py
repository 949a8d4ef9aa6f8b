"""The reconcile loop against an in-memory datastore and the behavioural fake kernel: nothing happens
before the first full sync, a datastore-triggered pass after a quiet one skips the kernel dump, the pass
after a change verifies against the kernel, and no failure (kernel, bug, datastore) ends the loop."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from keys.values import PrivateKey
from meshd.agent.health import Health
from meshd.agent.metrics import Metrics
from meshd.agent.reconciler import PassError, Reconciler
from meshd.core import actions as a
from meshd.core.local import Identity
from meshd.core.model import (
    EncryptionMode,
    Endpoint,
    IPAddress,
    IPNetwork,
    MeshConfig,
    Node,
    NodeRecord,
    Snapshot,
    Transport,
)
from meshd.core.moves import Moves
from meshd.core.ports import Applied
from meshd.core.state import ActualState, DeviceNames
from meshd.retry import Backoff
from tests.fakes import FakeDataplane

ME = "node-a"
MY_KEY = PrivateKey.generate().public_key()


def remote(i: int) -> Node:
    ip = ipaddress.ip_address(f"198.18.0.{i}")
    return Node(
        name=f"node-{'abcdefgh'[i - 1]}",
        underlay_ip=ip,
        pod_cidrs=(ipaddress.ip_network(f"198.19.{i}.0/24"),),
        public_key=PrivateKey.generate().public_key(),
        endpoint=Endpoint(ip, 51820),
        vxlan_mac=f"02:00:00:00:00:{i:02x}",
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
    )


MINE = Node(ME, ipaddress.ip_address("198.18.0.1"), (ipaddress.ip_network("198.19.1.0/24"),))


@dataclass
class MemoryStore:
    """The Datastore port in memory: tests edit `nodes`/`config`/`synced`, publish records what we wrote."""

    nodes: list[NodeRecord] = field(default_factory=lambda: [MINE])
    config: MeshConfig = field(default_factory=MeshConfig)
    synced: bool = True
    failure: str | None = None
    config_error: str | None = None
    meshconfig_generation: int | None = None
    published: list[dict[str, str | None]] = field(default_factory=list)
    broken: bool = False

    async def start(self) -> None: ...

    def snapshot(self) -> Snapshot:
        if self.broken:
            raise RuntimeError("a bug in the datastore adapter")
        return Snapshot(tuple(self.nodes), self.config, self.synced)

    async def wait_changed(self) -> None:
        await asyncio.Event().wait()

    async def publish(self, node_name: str, annotations: Mapping[str, str | None]) -> None:
        if not self.published or self.published[-1] != annotations:  # the port: no write if equal
            self.published.append(dict(annotations))

    async def close(self) -> None: ...


class FakeRoutes:
    def watch_networks(self, nets: Any) -> None: ...


@dataclass
class FakePlane:
    """Dataplane's surface over the fake kernel, counting observes; `fail_on` makes one action kind fail."""

    kernel: FakeDataplane = field(default_factory=FakeDataplane)
    names: DeviceNames = field(default_factory=DeviceNames)
    routes: FakeRoutes = field(default_factory=FakeRoutes)
    wireguard: None = None
    observes: int = 0
    fail_on: type | None = None

    async def observe(self) -> ActualState:
        self.observes += 1
        return self.kernel.observe()

    def watch_networks(self, nets: Iterable[IPNetwork]) -> None:
        self.routes.watch_networks(nets)

    async def apply(self, actions: Sequence[a.Action]) -> Applied:
        for action in actions:
            if self.fail_on is not None and isinstance(action, self.fail_on):
                raise OSError(f"the kernel refused {type(action).__name__}")
            self.kernel.apply([action])
        created = any(isinstance(x, a.CreateVxlanDevice) for x in actions)
        vxlan = self.kernel.observe().vxlan if created else None
        return Applied(vxlan_mac=vxlan.mac if vxlan else None)  # like Dataplane: the MAC it learned


def make(
    store: MemoryStore,
    plane: FakePlane,
    *,
    wireguard: bool = True,
    underlay_ip: IPAddress | None = None,
    **hooks: Any,
) -> tuple[Reconciler, Metrics, Health]:
    metrics, health = Metrics(CollectorRegistry()), Health()
    identity = Identity(name=ME, public_key=MY_KEY if wireguard else None, underlay_ip=underlay_ip)
    loop = Reconciler(
        datastore=store,
        dataplane=plane,
        identity=identity,
        metrics=metrics,
        health=health,
        moves=Moves(),
        retry=Backoff(initial=0.001, maximum=0.01, jitter=0),
        **hooks,
    )
    return loop, metrics, health


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_nothing_is_written_or_published_before_the_first_full_sync() -> None:
    store = MemoryStore(
        nodes=[MINE, remote(2)], config=MeshConfig(mode=EncryptionMode.DISABLED), synced=False
    )
    plane = FakePlane()
    loop, _, health = make(store, plane)
    assert await loop.reconcile_once() is False
    assert (plane.kernel.writes, store.published, health.ready) == (0, [], False)
    assert "first full sync" in health.detail
    store.synced = True
    assert await loop.reconcile_once() is True
    assert await loop.reconcile_once() is False
    assert plane.kernel.observe().routes and store.published and health.ready


async def test_a_datastore_change_after_a_quiet_pass_reuses_its_kernel_view_then_verifies() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    plane = FakePlane()
    loop, _, _ = make(store, plane)
    assert await loop.reconcile_once() is True  # build
    assert await loop.reconcile_once() is False  # verify: quiet
    observed = plane.observes
    store.nodes.append(remote(3))
    assert await loop.reconcile_once(full=False) is True  # the join: no kernel dump
    assert plane.observes == observed
    assert {r.dst for r in plane.kernel.observe().routes} == {
        ipaddress.ip_network("198.19.2.0/24"),
        ipaddress.ip_network("198.19.3.0/24"),
    }
    assert await loop.reconcile_once(full=False) is False  # after a change the kernel is read again
    assert plane.observes == observed + 1


async def test_drift_is_repaired_by_a_full_pass_even_after_quiet_ones() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    plane = FakePlane()
    loop, metrics, _ = make(store, plane)
    await loop.reconcile_once()
    await loop.reconcile_once()
    plane.kernel.routes.clear()  # somebody deleted our route by hand
    assert await loop.reconcile_once(full=True) is True
    assert plane.kernel.observe().routes
    assert count(metrics, "meshd_drift_repairs_total", kind="ReplaceRoute") == 2


async def test_a_failing_kernel_call_is_counted_and_retried_and_the_loop_lives_on() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    plane = FakePlane(fail_on=a.ReplaceRoute)
    loop, metrics, health = make(store, plane)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    for _ in range(500):
        if count(metrics, "meshd_reconcile_errors_total", phase="apply") >= 2:
            break
        await asyncio.sleep(0.01)
    assert count(metrics, "meshd_reconcile_errors_total", phase="apply") >= 2  # retried, with backoff
    assert not task.done() and not health.ready
    plane.fail_on = None  # the kernel recovers
    for _ in range(500):
        if health.ready:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert health.ready and plane.kernel.observe().routes


async def test_an_unexpected_error_is_a_failed_pass_not_a_dead_agent() -> None:
    store = MemoryStore(broken=True)
    loop, _, _ = make(store, FakePlane())
    with pytest.raises(PassError) as err:
        await loop.reconcile_once()
    assert err.value.phase == "internal"


async def test_a_stopped_datastore_makes_the_node_not_ready_but_keeps_the_mesh() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    plane = FakePlane()
    loop, _, health = make(store, plane)
    await loop.reconcile_once()
    assert health.ready
    store.failure = "nodes: 403 Forbidden"
    await loop.reconcile_once()
    assert not health.ready and "403" in health.detail
    assert plane.kernel.observe().routes  # nothing torn down


async def test_the_first_publish_carries_every_annotation_in_one_write() -> None:
    """The pass creating the VXLAN link publishes key, endpoint, MAC, capabilities and generation at once."""
    store = MemoryStore(nodes=[MINE, remote(2)])
    plane = FakePlane()
    loop, _, _ = make(store, plane)
    assert await loop.reconcile_once() is True
    (first,) = store.published
    kernel_vxlan = plane.kernel.observe().vxlan
    assert kernel_vxlan is not None and first["meshd.io/vxlan-mac"] == kernel_vxlan.mac.lower()
    assert await loop.reconcile_once() is False
    assert store.published == [first]
    assert first["meshd.io/public-key"] == MY_KEY.base64
    assert first["meshd.io/endpoint"] and first["meshd.io/capabilities"]
    assert first["meshd.io/underlay-ip"] is None  # no --underlay-ip: status.addresses is the truth


async def test_an_underlay_flag_is_published_so_peers_use_it() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    loop, _, _ = make(store, FakePlane(), underlay_ip=ipaddress.ip_address("198.18.9.1"))
    await loop.reconcile_once()
    await loop.reconcile_once()
    assert store.published[-1]["meshd.io/underlay-ip"] == "198.18.9.1"


async def test_a_node_without_wireguard_runs_the_fallback_and_does_not_advertise_wireguard() -> None:
    """`--wireguard auto` without a backend: the agent meshes over VXLAN and publishes no key or endpoint."""
    store = MemoryStore(nodes=[MINE, remote(2), remote(3)])
    plane = FakePlane()
    loop, metrics, _ = make(store, plane, wireguard=False)
    await loop.reconcile_once()
    await loop.reconcile_once()
    kernel = plane.kernel.observe()
    assert kernel.wireguard is None and kernel.vxlan is not None
    assert {r.dev for r in kernel.routes} == {kernel.vxlan.name} and len(kernel.routes) == 2
    (first,) = store.published
    assert first["meshd.io/capabilities"] == "vxlan"
    assert first["meshd.io/public-key"] is None and first["meshd.io/endpoint"] is None
    assert count(metrics, "meshd_peers", transport="vxlan") == 2


async def test_a_rejected_meshconfig_is_reported_while_the_previous_one_stays_in_force() -> None:
    store = MemoryStore(nodes=[MINE, remote(2)])
    loop, metrics, health = make(store, FakePlane())
    await loop.reconcile_once()
    store.config_error = "meshconfig.yaml: spec.mode: 'Sometimes' is not one of Disabled, Enabled, Required"
    await loop.reconcile_once()
    assert health.readyz() == (200, f"ok; MeshConfig rejected: {store.config_error}")
    assert count(metrics, "meshd_meshconfig_rejected") == 1
    store.config_error = None
    await loop.reconcile_once()
    assert health.readyz() == (200, "ok") and count(metrics, "meshd_meshconfig_rejected") == 0


async def test_peer_encrypted_says_per_peer_whether_pod_traffic_goes_over_wireguard() -> None:
    """`meshd_peer_encrypted{peer}`: 1 for a WireGuard pair, 0 once the pair moves to the fallback."""
    store = MemoryStore(nodes=[MINE, remote(2), remote(3)])
    loop, metrics, _ = make(store, FakePlane())
    await loop.reconcile_once()
    assert [count(metrics, "meshd_peer_encrypted", peer=p) for p in ("node-b", "node-c")] == [1, 1]
    store.config = MeshConfig(mode=EncryptionMode.DISABLED)
    await loop.reconcile_once()
    assert [count(metrics, "meshd_peer_encrypted", peer=p) for p in ("node-b", "node-c")] == [0, 0]
    store.nodes = [MINE, remote(2)]
    await loop.reconcile_once()
    assert metrics.registry.get_sample_value("meshd_peer_encrypted", {"peer": "node-c"}) is None
