"""The WireGuard transport: what a pair needs to be encrypted, the device, one peer per encryptable pair
(in use or standby, so toggling encryption only moves routes), routes, and the minimal per-peer diff.

Pure (no pyroute2 at import): the kernel and userspace backends behind the `WireGuardDevice` port
(overlay/kernel.py, overlay/userspace.py) are this transport's link adapter.

The peer diff follows Talos' encode(desired, existing): a changed peer gets one `UpdatePeer` holding only
what changed; a peer is never removed and re-added to change it, and no other peer's allowed IPs are
rewritten. The comparison is asymmetric: an endpoint the kernel learned by roaming is not drift unless we
pinned one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from keys.values import KEY_LEN, PublicKey
from meshd.core import actions as a
from meshd.core.conflicts import ClusterView
from meshd.core.devices import DeviceChanges, Link, diff_link
from meshd.core.model import Endpoint, IPNetwork, LocalNode, Node, Transport
from meshd.core.state import (
    ActualState,
    DesiredState,
    DeviceNames,
    ObservedPeer,
    ObservedWireGuard,
    PeerSpec,
    Problem,
    Route,
    WireGuardDeviceSpec,
)
from meshd.core.transport import NO_ENTRIES, Named, PairEntries, PairPlan, PlanContext, first_blocker
from meshd.errors import InvalidValueError, PermanentError

MODES = ("auto", "kernel", "userspace")
"""The WireGuard backends `--wireguard` picks from (overlay/detect.py)."""
DEFAULT_RUN_DIR = Path("/var/run/meshd")
"""Where the userspace backend keeps wireguard-go's PID and log files (and the agent its status socket)."""
MAX_PORT = 65535
MAX_KEEPALIVE = 65535
OVERHEAD = 80  # outer IPv6 + UDP + WireGuard header and tag, so IPv4 and IPv6 underlays both fit


class WireGuard(Named):
    """The `Encapsulation` of encrypted pairs."""

    def blocker(self, local: LocalNode, peer: Node, view: ClusterView) -> str | None:
        me = local.node
        return first_blocker(
            (
                (not local.wireguard_available, "this node has no WireGuard backend"),
                (me.public_key is None, "this node has no WireGuard key"),
                (me.endpoint is None, "this node publishes no WireGuard endpoint"),
                (Transport.WIREGUARD not in me.capabilities, "this node does not advertise WireGuard"),
                (Transport.WIREGUARD not in peer.capabilities, f"{peer.name} does not run WireGuard"),
                (peer.public_key is None, f"{peer.name} publishes no WireGuard key"),
                (peer.endpoint is None, f"{peer.name} publishes no WireGuard endpoint"),
                (
                    me.name in view.key_copiers,
                    "this node publishes a public key that another node proves it holds",
                ),
                (
                    peer.name in view.key_copiers,
                    f"{peer.name} publishes a public key that another node proves it holds",
                ),
                (
                    me.public_key in view.duplicate_keys,
                    "this node's public key is also published by another node",
                ),
                (
                    peer.public_key in view.duplicate_keys,
                    f"{peer.name}'s public key is also published by another node",
                ),
            )
        )

    def device(self, state: DesiredState, ctx: PlanContext) -> DesiredState:
        local, config = ctx.local, ctx.config
        device = None
        if local.wireguard_available and local.node.public_key is not None:
            device = WireGuardDeviceSpec(
                name=ctx.names.wireguard,
                public_key=local.node.public_key,
                listen_port=config.wireguard.listen_port,
                mtu=config.wireguard.mtu or local.underlay_mtu - OVERHEAD,
                addresses=ctx.addresses,
            )
        return replace(state, wireguard=device)

    def entries(self, pair: PairPlan, ctx: PlanContext) -> PairEntries:
        """A WireGuard peer for a pair that can be encrypted, in use or standby (hitless toggles)."""
        peer = pair.peer
        if Transport.WIREGUARD not in pair.usable or peer.public_key is None:
            return NO_ENTRIES
        spec = PeerSpec(
            public_key=peer.public_key,
            endpoint=peer.endpoint,
            allowed_ips=frozenset(peer.pod_cidrs),
            persistent_keepalive=ctx.config.wireguard.persistent_keepalive,
            node=peer.name,
        )
        return PairEntries(peers=(spec,))

    def route(self, peer: Node, cidr: IPNetwork, names: DeviceNames) -> Route | Problem:
        return Route(cidr, names.wireguard)

    def diff(self, desired: DesiredState, actual: ActualState) -> DeviceChanges:
        want, have = desired.wireguard, actual.wireguard
        configure: list[a.Action] = []
        if want and have and (have.public_key, have.listen_port) != (want.public_key, want.listen_port):
            configure.append(a.ConfigureWireGuardDevice(want))
        # A new WireGuard link comes up at the backend's default MTU (1420): set ours right after creating it.
        create = (a.CreateWireGuardDevice(want), a.SetLinkMtu(want.name, want.mtu)) if want else ()
        changes = diff_link(_link(want), _link(have), create=create, configure=configure)
        if want is None:
            return changes  # a deleted device takes its peers along
        seen = () if have is None or changes.vanished is not None else have.peers
        adds, removes = diff_peers(desired.peers, seen)
        return replace(changes, entry_adds=adds, entry_removes=removes)


def _link(device: WireGuardDeviceSpec | ObservedWireGuard | None) -> Link | None:
    if device is None:
        return None
    up = device.up if isinstance(device, ObservedWireGuard) else True
    return Link(device.name, (device.name,), device.mtu, device.addresses, up=up)


def diff_peers(
    desired: Iterable[PeerSpec], actual: Iterable[ObservedPeer]
) -> tuple[tuple[a.Action, ...], tuple[a.Action, ...]]:
    """(adds and updates, removals), each sorted by public key."""
    want = {p.public_key: p for p in desired}
    have = {p.public_key: p for p in actual}
    changes: list[a.Action] = []
    for key in sorted(want):
        seen = have.get(key)
        change = a.AddPeer(want[key]) if seen is None else peer_update(want[key], seen)
        if change is not None:
            changes.append(change)
    return tuple(changes), tuple(a.RemovePeer(key) for key in sorted(have) if key not in want)


def peer_update(spec: PeerSpec, seen: ObservedPeer) -> a.UpdatePeer | None:
    """The fields of one existing peer that differ from what we want, or None when nothing does."""
    endpoint = spec.endpoint if spec.endpoint is not None and spec.endpoint != seen.endpoint else None
    allowed = spec.allowed_ips if spec.allowed_ips != seen.allowed_ips else None
    keepalive = spec.persistent_keepalive if spec.persistent_keepalive != seen.persistent_keepalive else None
    if endpoint is None and allowed is None and keepalive is None:
        return None
    return a.UpdatePeer(
        spec.public_key,
        endpoint=endpoint,
        allowed_ips=allowed,
        persistent_keepalive=keepalive,
        node=spec.node,
    )


# --- validation of what we send (before anything is sent: UAPI `set` is not atomic) ---------------------------------------------------------------------------------


def _check_port(port: int, what: str, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= MAX_PORT:
        raise InvalidValueError(f"{what} {port!r} out of range {low}-{MAX_PORT}")


def _check_keepalive(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_KEEPALIVE:
        raise InvalidValueError(f"persistent keepalive {seconds!r} out of range 0-{MAX_KEEPALIVE}")


def check_public_key(key: PublicKey) -> None:
    if not isinstance(key, PublicKey) or len(key.raw) != KEY_LEN:
        raise InvalidValueError(f"peer public key must be a {KEY_LEN}-byte PublicKey")


def _check_endpoint(endpoint: Endpoint) -> None:
    if not isinstance(endpoint, Endpoint) or not isinstance(
        endpoint.host, ipaddress.IPv4Address | ipaddress.IPv6Address
    ):
        raise InvalidValueError(f"endpoint {endpoint!r} is not an IP endpoint")
    _check_port(endpoint.port, "endpoint port", allow_zero=False)


def _check_networks(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    checked = []
    for net in nets:
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise InvalidValueError(f"allowed IP {net!r} is not an IP network")
        checked.append(net)
    return sorted(checked, key=lambda n: (n.version, n))


def check_listen_port(port: int) -> None:
    _check_port(port, "listen port", allow_zero=True)


def check_peer(peer: PeerSpec) -> list[IPNetwork]:
    """Validate a whole peer; returns its allowed IPs in a stable order."""
    check_public_key(peer.public_key)
    if peer.endpoint is not None:
        _check_endpoint(peer.endpoint)
    _check_keepalive(peer.persistent_keepalive)
    return _check_networks(peer.allowed_ips)


def check_update(change: a.UpdatePeer) -> list[IPNetwork] | None:
    """Validate the given fields of a peer change; returns its allowed IPs (None: not changed)."""
    check_public_key(change.public_key)
    if change.endpoint is not None:
        _check_endpoint(change.endpoint)
    if change.persistent_keepalive is not None:
        _check_keepalive(change.persistent_keepalive)
    return _check_networks(change.allowed_ips) if change.allowed_ips is not None else None


def check_spec(spec: WireGuardDeviceSpec, *, name: str, public_key: PublicKey) -> None:
    """The spec is for this device and wants the public half of the backend's own private key."""
    if spec.name != name:
        raise PermanentError(f"spec for device {spec.name} given to the backend of {name}")
    if spec.public_key != public_key:
        raise PermanentError(
            f"device {name}: wanted public key {spec.public_key.short}... is not the one of our "
            f"private key ({public_key.short}...)"
        )
    check_listen_port(spec.listen_port)


def device_changes(spec: WireGuardDeviceSpec, *, key: PublicKey | None, port: int) -> tuple[bool, int | None]:
    """(set the private key?, listen port to set or None) to bring a device with public `key` and
    `port` to `spec`. A wanted port 0 means "any": an already bound port is kept."""
    set_key = key != spec.public_key
    wanted = spec.listen_port != 0 or port == 0
    return set_key, spec.listen_port if wanted and port != spec.listen_port else None


WIREGUARD = WireGuard(Transport.WIREGUARD, kind="wireguard", label="WireGuard")
