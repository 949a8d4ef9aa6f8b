"""`meshd run`: wires settings, key, backends, datastore, metrics and the loop once, then runs until
SIGTERM/SIGINT. Stopping leaves the dataplane in place (a DaemonSet rollout must not drop traffic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from keys.store import load_or_create
from keys.values import PrivateKey
from meshd.agent.cni import cni_conflist, write_cni_config
from meshd.agent.dataplane import Dataplane
from meshd.agent.guards import SavedGuards, guard_file
from meshd.agent.http import Health, serve
from meshd.agent.metrics import Metrics
from meshd.agent.reconciler import Reconciler
from meshd.agent.settings import Settings
from meshd.agent.underlay import underlay_mtu
from meshd.core.local import Identity
from meshd.core.model import LocalNode, Node
from meshd.core.ports import Datastore, WireGuardDevice
from meshd.core.state import DesiredState
from meshd.errors import UnsupportedError
from overlay.detect import select_backend
from overlay.guards import NetlinkGuards
from overlay.routes import NetlinkRouteTable
from vxlan.links import NetlinkLinks, ipip_supported

log = logging.getLogger(__name__)


def make_datastore(
    settings: Settings, *, register: bool = True, on_error: Callable[[str], None] | None = None
) -> Datastore:
    file_dir = settings.file_dir
    if file_dir is not None:
        from meshd.datastore.file import FileDatastore

        me = None
        if register and settings.underlay_ip is not None:
            me = Node(settings.node_name, settings.underlay_ip, settings.pod_cidrs, labels=settings.labels)
        return FileDatastore(file_dir, register=me)
    from meshd.datastore.kubernetes import KubernetesDatastore

    return KubernetesDatastore(
        node_name=settings.node_name,
        kubeconfig=settings.kubeconfig,
        underlay_override=settings.underlay_ip,
        on_error=on_error or (lambda kind: None),
    )


async def make_wireguard(settings: Settings, key: PrivateKey) -> WireGuardDevice | None:
    try:
        return await select_backend(
            settings.wireguard, name=settings.names.wireguard, private_key=key, run_dir=settings.run_dir
        )
    except UnsupportedError as exc:
        log.error("no WireGuard on this node, running the unencrypted fallback only: %s", exc)
        return None


def cni_writer(directory: Path) -> Callable[[LocalNode, DesiredState], Awaitable[None]]:
    """Keeps DIR/10-meshd.conflist in line with our pod CIDRs and the smallest overlay MTU."""

    async def write(local: LocalNode, desired: DesiredState) -> None:
        mtus = [d.mtu for d in (desired.wireguard, desired.vxlan, desired.ipip) if d is not None]
        conflist = cni_conflist(pod_cidrs=local.node.pod_cidrs, mtu=min(mtus, default=local.underlay_mtu))
        await asyncio.to_thread(write_cni_config, directory, conflist)

    return write


async def run_agent(settings: Settings) -> int:
    registry = CollectorRegistry()
    metrics, health = Metrics(registry), Health()
    server = serve(settings.metrics_addr, registry, health)
    key, created = load_or_create(settings.key_file)
    if created:
        log.info("generated a new WireGuard key in %s", settings.key_file)
    wireguard = await make_wireguard(settings, key.private)
    ipip = await ipip_supported()
    links, routes, kernel_guards = NetlinkLinks(), NetlinkRouteTable(), NetlinkGuards()
    guards = SavedGuards(kernel_guards, guard_file(settings.key_file))
    await guards.install_saved()  # Required guards of the last run, before anything else (fail closed)
    datastore = make_datastore(settings, on_error=metrics.count_datastore_error)
    identity = Identity(
        name=settings.node_name,
        public_key=key.public_key() if wireguard is not None else None,
        key_proof=key.proof(settings.node_name) if wireguard is not None else None,
        underlay_ip=settings.underlay_ip,
        pod_cidrs=settings.pod_cidrs,
        labels=settings.labels,
        ipip_available=ipip,
    )
    loop = Reconciler(
        datastore=datastore,
        dataplane=Dataplane(settings.names, links, routes, wireguard, ipip, guards),
        identity=identity,
        metrics=metrics,
        health=health,
        underlay_mtu=underlay_mtu,
        resync=settings.resync,
        after_pass=cni_writer(settings.cni_conf_dir) if settings.cni_conf_dir else None,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await datastore.start()
    log.info("meshd agent for node %s started (%s datastore)", settings.node_name, settings.datastore)
    try:
        await loop.run(stop)
    finally:
        log.info("stopping; the dataplane stays in place")
        await datastore.close()
        for closer in (links, routes, kernel_guards):
            with contextlib.suppress(Exception):
                await closer.close()
        server.shutdown()
    return 0
