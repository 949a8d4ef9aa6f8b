"""`meshd run`: wires settings, key, backends, datastore, HTTP and the loop once, then runs until
SIGTERM/SIGINT. Stopping leaves the dataplane in place (a DaemonSet rollout must not drop traffic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from keys.rotation import recover
from keys.store import NodeKey, load_or_create
from keys.values import PrivateKey
from meshd.agent.cni import cni_conflist, write_cni_config
from meshd.agent.dataplane import Dataplane
from meshd.agent.endpoints import Endpoints
from meshd.agent.gcfreeze import collect_within, freeze_after_passes
from meshd.agent.guards import SavedGuards, guard_file
from meshd.agent.health import Health
from meshd.agent.helper_link import HelperLink
from meshd.agent.kernel_events import KernelEvents
from meshd.agent.metrics import Metrics, PeerCollector
from meshd.agent.passes import AfterPass, PassDatastore
from meshd.agent.reconciler import Reconciler
from meshd.agent.rotation import RotationDriver
from meshd.agent.settings import Settings
from meshd.agent.status_wiring import key_rotated, status_reporting
from meshd.agent.underlay import underlay_mtu
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.model import LocalNode, Node
from meshd.core.moves import Moves
from meshd.core.ports import WireGuardDevice
from meshd.core.state import DesiredState
from meshd.errors import UnsupportedError
from meshd.pq.manager import PskManager
from meshd.pq.report import PskCollector, pair_states
from meshd.pq.report import status as pq_status
from meshd.pq.state import PskDevice
from overlay.detect import select_backend
from overlay.device import KeyedDevice
from overlay.guards import NetlinkGuards
from overlay.routes import NetlinkRouteTable
from vxlan.links import NetlinkLinks, ipip_supported

log = logging.getLogger(__name__)


def make_datastore(
    settings: Settings, moves: Moves, *, register: bool = True, on_error: Callable[[str], None] | None = None
) -> PassDatastore:
    """`register`: the file datastore writes our own record (in Kubernetes the kubelet does). `moves`: the
    agent's, told which records moved."""
    agent, store = settings.agent, settings.datastore
    file_dir = store.file_dir
    if file_dir is not None:
        from meshd.datastore.file import FileDatastore

        me = None
        if register and agent.underlay_ip is not None:
            me = Node(agent.node_name, agent.underlay_ip, agent.pod_cidrs, labels=agent.labels)
        return FileDatastore(file_dir, register=me, rescan_interval=store.rescan_interval)
    from meshd.datastore.kubernetes import KubernetesDatastore

    return KubernetesDatastore(
        node_name=agent.node_name,
        kubeconfig=store.kubeconfig,
        underlay_override=agent.underlay_ip,
        watch=store.watch,
        on_error=on_error or (lambda kind: None),
        moves=moves,
    )


async def make_wireguard(settings: Settings, key: PrivateKey) -> WireGuardDevice | None:
    backends = settings.backends
    try:
        return await select_backend(
            backends.wireguard, name=backends.names.wireguard, private_key=key, run_dir=settings.agent.run_dir
        )
    except UnsupportedError as exc:
        log.error("no WireGuard on this node, running the unencrypted fallback only: %s", exc)
        return None


def make_rotation(
    settings: Settings, wireguard: WireGuardDevice | None, links: NetlinkLinks, registry: CollectorRegistry
) -> RotationDriver | None:
    """Key rotation for a node with WireGuard (its helper link uses the main device's backend)."""
    if not isinstance(wireguard, KeyedDevice):
        return None
    names, mode, run_dir = settings.backends.names, settings.backends.wireguard, settings.agent.run_dir

    async def make(name: str, key: PrivateKey) -> WireGuardDevice:
        return await select_backend(mode, name=name, private_key=key, run_dir=run_dir)

    return RotationDriver(
        name=settings.agent.node_name,
        key_file=settings.agent.key_file,
        main=names.wireguard,
        helper=HelperLink(names.rotation_helper, make, links),
        rekey=lambda key: wireguard.rekey(key.private),
        observe_main=wireguard.observe_device,
        registry=registry,
    )


def make_identity(
    settings: Settings, key: NodeKey | None, *, ipip: bool, wireguard: WireGuardDevice | None
) -> Identity:
    """Our identity; `key` None: no WireGuard here."""
    agent = settings.agent
    return Identity(
        name=agent.node_name,
        public_key=key.public_key() if key is not None else None,
        key_proof=key.proof(agent.node_name) if key is not None else None,
        underlay_ip=agent.underlay_ip,
        pod_cidrs=agent.pod_cidrs,
        labels=agent.labels,
        ipip_available=ipip,
        post_quantum=agent.post_quantum and isinstance(wireguard, PskDevice),
    )


def chain(*hooks: AfterPass | None) -> AfterPass | None:
    """One after-pass hook running each given one in order."""
    todo = [h for h in hooks if h is not None]
    if len(todo) < 2:
        return todo[0] if todo else None

    async def run(local: LocalNode, desired: DesiredState) -> None:
        for hook in todo:
            await hook(local, desired)

    return run


def cni_writer(directory: Path) -> AfterPass:
    """Keeps DIR/10-meshd.conflist in line with our pod CIDRs and the smallest overlay MTU."""

    async def write(local: LocalNode, desired: DesiredState) -> None:
        mtus = [d.mtu for d in (desired.wireguard, desired.vxlan, desired.ipip) if d is not None]
        conflist = cni_conflist(pod_cidrs=local.node.pod_cidrs, mtu=min(mtus, default=local.underlay_mtu))
        await asyncio.to_thread(write_cni_config, directory, conflist)

    return write


def post_quantum(
    identity: Identity,
    wireguard: WireGuardDevice | None,
    datastore: PassDatastore,
    view: MeshView,
    registry: CollectorRegistry,
    *,
    moves: Moves,
) -> tuple[PskManager, AfterPass] | None:
    """The PSK layer (meshd.pq): its manager and the hook that feeds it each pass's plan; it reports in
    /status and /metrics (also when this node opted out: its pairs then say so, and hold no PSK)."""
    if not isinstance(wireguard, PskDevice):
        return None
    manager = PskManager(node=identity.name, device=wireguard, moves=moves)
    registry.register(PskCollector(manager))
    view.extra["postQuantum"] = lambda: pq_status(manager)
    view.psk_states = lambda: pair_states(manager)
    view.psk_changed = manager.watch.changed  # set when a state changes: the MeshNode reporter reads them

    async def update(local: LocalNode, desired: DesiredState) -> None:
        found = view.found.wireguard if view.found else None  # no second read of a device of 5000 peers
        await manager.update(datastore.snapshot(), local, desired, found)

    return manager, update


def load_key(key_file: Path) -> tuple[NodeKey, bool]:
    """Our node key (and whether it was just created), after finishing or rolling back a rotation an
    earlier agent left half done."""
    recover(key_file)
    key, created = load_or_create(key_file)
    if created:
        log.info("generated a new WireGuard key in %s", key_file)
    return key, created


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


async def close_all(*closers: Callable[[], Awaitable[None]]) -> None:
    """Close each adapter in order; one failing to close does not keep the others open."""
    for close in closers:
        with contextlib.suppress(Exception):
            await close()


def connect_rotation(rotation: RotationDriver, loop: Reconciler, psk: PskManager | None) -> None:
    """A rotation step asks for a pass; a key switch tells the PSK layer (a PSK belongs to the pair's keys)."""
    rotation.trigger = loop.trigger
    rotation.on_switch = psk.own_key_changing if psk else None


async def run_agent(settings: Settings) -> int:
    agent = settings.agent
    registry = CollectorRegistry()
    metrics, health, moves = Metrics(registry), Health(), Moves()  # one Moves: every table of this agent
    key, created = load_key(agent.key_file)
    wireguard, ipip = await make_wireguard(settings, key.private), await ipip_supported()
    identity = make_identity(settings, key if wireguard is not None else None, ipip=ipip, wireguard=wireguard)
    view = MeshView(identity, wireguard)
    collector = PeerCollector(view)
    registry.register(collector)
    links, routes, kernel_guards = NetlinkLinks(), NetlinkRouteTable(), NetlinkGuards()
    guards = SavedGuards(kernel_guards, guard_file(agent.key_file))
    await guards.install_saved()  # Required guards of the last run, before anything else (fail closed)
    datastore = make_datastore(settings, moves, on_error=metrics.count_datastore_error)
    events = KernelEvents(routes, settings.backends.names)
    rotation = make_rotation(settings, wireguard, links, registry)
    psk = post_quantum(identity, wireguard, datastore, view, registry, moves=moves)
    endpoints = Endpoints(
        settings.http.metrics_addr, registry, health, collector, agent.status_socket, view,
        rotation.request if rotation else None,
    )  # fmt: skip
    loop = Reconciler(
        datastore=datastore,
        dataplane=Dataplane(settings.backends.names, links, routes, wireguard, ipip, guards),
        identity=identity,
        metrics=metrics,
        health=health,
        moves=moves,
        view=view,
        underlay_mtu=underlay_mtu,
        resync=agent.resync,
        retry=agent.retry,
        after_pass=chain(
            cni_writer(agent.cni_conf_dir) if agent.cni_conf_dir else None,
            psk and psk[1],
        ),
        # what no peer waits on: after our record is published
        after_publish=chain(freeze_after_passes(), endpoints.published_hook()),
        events=events,
        rotation=rotation,
    )
    stop = stop_on_signals()
    collect_within()
    serving = endpoints.start()
    await datastore.start()
    log.info("meshd agent for node %s started (%s datastore)", agent.node_name, settings.datastore.kind)
    side = [r.run(stop) for r in (rotation, psk and psk[0]) if r]  # key rotation, PSK exchanges
    if rotation is not None:
        connect_rotation(rotation, loop, psk and psk[0])
    try:
        async with status_reporting(settings, view, datastore, key_created=created) as recorder:
            if rotation is not None:
                rotation.on_rotated = key_rotated(recorder, agent.node_name)
            await asyncio.gather(loop.run(stop), serving, *side)
    finally:
        log.info("stopping; the dataplane stays in place")
        events.close()
        await close_all(datastore.close, links.close, routes.close, kernel_guards.close, endpoints.close)
    return 0
