"""Diff of one overlay link, shared by the transports: create, recreate, MTU and addresses. Pure.

Each transport's `diff` returns a `DeviceChanges` whose parts `meshd.core.diff` places in the global
make-before-break order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshd.core import actions as a
from meshd.core.model import IPAddress, IPNetwork
from meshd.core.state import IPInterface

IFF_UP = 0x1
"""<linux/if.h>: the link is set up (in a link message's flags)."""


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    recreate: tuple[a.Action, ...] = ()  # DeleteDevice that must run before anything else
    setup: tuple[a.Action, ...] = ()  # create / configure / MTU / address adds
    entry_adds: tuple[a.Action, ...] = ()  # per-peer entries (peers, neighbours, FDB) added or updated
    entry_removes: tuple[a.Action, ...] = ()  # per-peer entries no longer wanted, after the routes moved
    address_removes: tuple[a.Action, ...] = ()
    delete: tuple[a.Action, ...] = ()  # DeleteDevice of a link no longer wanted
    vanished: str | None = None  # an existing link deleted first: what it held is gone before we start
    deleted: str | None = None  # an existing link deleted last: what it holds goes with it

    @property
    def gone(self) -> frozenset[str]:
        """Links whose entries go with them: not removed one by one."""
        return frozenset(x for x in (self.vanished, self.deleted) if x is not None)


@dataclass(frozen=True, slots=True)
class Link:
    """The generic view of one link, wanted or observed: its identity (what cannot change in place, e.g.
    name, VNI, local address), MTU and addresses."""

    name: str
    identity: tuple[object, ...]
    mtu: int
    addresses: frozenset[IPInterface]
    label: str = "name"  # what `identity` holds, for the recreate reason, e.g. "name/vni/port/local"
    up: bool = True  # observed: IFF_UP (a wanted link is up)


def address_key(addr: IPInterface) -> tuple[int, int, int]:
    return (addr.version, int(addr.ip), addr.network.prefixlen)


def ip_key(ip: IPAddress) -> tuple[int, int]:
    return (ip.version, int(ip))


def network_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def diff_link(
    desired: Link | None,
    actual: Link | None,
    *,
    create: Sequence[a.Action],
    configure: Sequence[a.Action] = (),
) -> DeviceChanges:
    """Create a missing link, recreate one whose identity changed, else fix MTU and addresses in place.
    `create`: the actions that make the link; `configure`: what a kept link needs besides MTU/addresses."""
    if desired is None:
        if actual is None:
            return DeviceChanges()
        return DeviceChanges(delete=(a.DeleteDevice(actual.name, "no longer wanted"),), deleted=actual.name)
    created = (*create, *_adds(desired.name, desired.addresses))
    if actual is None:
        return DeviceChanges(setup=created)
    if actual.identity != desired.identity:
        why = f"{desired.label} {_show(actual.identity)} -> {_show(desired.identity)}"
        recreate = (a.DeleteDevice(actual.name, f"recreating: {why}"),)
        return DeviceChanges(recreate=recreate, setup=created, vanished=actual.name)
    setup = [*configure, *(() if actual.up else (a.SetLinkUp(desired.name),))]
    if desired.mtu != actual.mtu:
        setup.append(a.SetLinkMtu(desired.name, desired.mtu))
    setup.extend(_adds(desired.name, desired.addresses - actual.addresses))
    removes = tuple(a.RemoveAddress(desired.name, x) for x in _sorted(actual.addresses - desired.addresses))
    return DeviceChanges(setup=tuple(setup), address_removes=removes)


def _show(values: tuple[object, ...]) -> str:
    return "/".join(map(str, values))


def _adds(name: str, addresses: Iterable[IPInterface]) -> tuple[a.Action, ...]:
    return tuple(a.AddAddress(name, x) for x in _sorted(addresses))


def _sorted(addresses: Iterable[IPInterface]) -> list[IPInterface]:
    return sorted(addresses, key=address_key)
