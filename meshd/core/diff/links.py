"""Diff of our three links (WireGuard, VXLAN, IPIP): create, configure, recreate, MTU, addresses. Pure.

Each function returns a `DeviceChanges` whose parts `meshd.core.diff` places in the global action order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshd.core import actions as a
from meshd.core.model import IPAddress, IPNetwork
from meshd.core.state import (
    IPInterface,
    IpipDeviceSpec,
    ObservedIpip,
    ObservedVxlan,
    ObservedWireGuard,
    VxlanDeviceSpec,
    WireGuardDeviceSpec,
)


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    recreate: tuple[a.Action, ...] = ()  # DeleteDevice that must run before anything else
    setup: tuple[a.Action, ...] = ()  # create / configure / MTU / address adds
    address_removes: tuple[a.Action, ...] = ()
    delete: tuple[a.Action, ...] = ()  # DeleteDevice of a link no longer wanted
    vanished: str | None = None  # an existing link deleted first: what it held is gone before we start
    deleted: str | None = None  # an existing link deleted last: what it holds goes with it


def address_key(addr: IPInterface) -> tuple[int, int, int]:
    return (addr.version, int(addr.ip), addr.network.prefixlen)


def ip_key(ip: IPAddress) -> tuple[int, int]:
    return (ip.version, int(ip))


def network_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def diff_wireguard_device(
    desired: WireGuardDeviceSpec | None, actual: ObservedWireGuard | None
) -> DeviceChanges:
    if desired is None:
        return _unwanted(actual.name if actual else None)
    # A new WireGuard link comes up at the backend's default MTU (1420): set ours right after creating it.
    create = (a.CreateWireGuardDevice(desired), a.SetLinkMtu(desired.name, desired.mtu))
    if actual is None:
        return _created(create, desired.name, desired.addresses)
    if actual.name != desired.name:
        why = f"renamed to {desired.name}"
        return _recreated(actual.name, why, create, desired.name, desired.addresses)
    setup: list[a.Action] = []
    if actual.public_key != desired.public_key or actual.listen_port != desired.listen_port:
        setup.append(a.ConfigureWireGuardDevice(desired))
    return _kept(
        setup,
        desired.name,
        mtu=desired.mtu,
        actual_mtu=actual.mtu,
        desired=desired.addresses,
        actual=actual.addresses,
    )


def diff_vxlan_device(desired: VxlanDeviceSpec | None, actual: ObservedVxlan | None) -> DeviceChanges:
    if desired is None:
        return _unwanted(actual.name if actual else None)
    if actual is None:
        return _created((a.CreateVxlanDevice(desired),), desired.name, desired.addresses)
    was = (actual.name, actual.vni, actual.port, actual.local)
    want = (desired.name, desired.vni, desired.port, desired.local)
    if was != want:
        why = f"name/vni/port/local {_show(was)} -> {_show(want)}"
        return _recreated(actual.name, why, (a.CreateVxlanDevice(desired),), desired.name, desired.addresses)
    return _kept(
        [],
        desired.name,
        mtu=desired.mtu,
        actual_mtu=actual.mtu,
        desired=desired.addresses,
        actual=actual.addresses,
    )


def diff_ipip_device(desired: IpipDeviceSpec | None, actual: ObservedIpip | None) -> DeviceChanges:
    if desired is None:
        return _unwanted(actual.name if actual else None)
    if actual is None:
        return _created((a.CreateIpipDevice(desired),), desired.name, desired.addresses)
    if (actual.name, actual.local) != (desired.name, desired.local):
        why = f"name/local {actual.name}/{actual.local} -> {desired.name}/{desired.local}"
        return _recreated(actual.name, why, (a.CreateIpipDevice(desired),), desired.name, desired.addresses)
    return _kept(
        [],
        desired.name,
        mtu=desired.mtu,
        actual_mtu=actual.mtu,
        desired=desired.addresses,
        actual=actual.addresses,
    )


def _show(values: tuple[object, ...]) -> str:
    return "/".join(map(str, values))


def _unwanted(name: str | None) -> DeviceChanges:
    if name is None:
        return DeviceChanges()
    return DeviceChanges(delete=(a.DeleteDevice(name, "no longer wanted"),), deleted=name)


def _created(create: tuple[a.Action, ...], name: str, addresses: frozenset[IPInterface]) -> DeviceChanges:
    return DeviceChanges(setup=(*create, *_adds(name, addresses)))


def _recreated(
    old: str, why: str, create: tuple[a.Action, ...], name: str, addresses: frozenset[IPInterface]
) -> DeviceChanges:
    return DeviceChanges(
        recreate=(a.DeleteDevice(old, f"recreating: {why}"),),
        setup=_created(create, name, addresses).setup,
        vanished=old,
    )


def _kept(
    setup: list[a.Action],
    name: str,
    *,
    mtu: int,
    actual_mtu: int,
    desired: frozenset[IPInterface],
    actual: frozenset[IPInterface],
) -> DeviceChanges:
    if mtu != actual_mtu:
        setup.append(a.SetLinkMtu(name, mtu))
    setup.extend(_adds(name, desired - actual))
    removes = tuple(a.RemoveAddress(name, x) for x in _sorted(actual - desired))
    return DeviceChanges(setup=tuple(setup), address_removes=removes)


def _adds(name: str, addresses: Iterable[IPInterface]) -> tuple[a.Action, ...]:
    return tuple(a.AddAddress(name, x) for x in _sorted(addresses))


def _sorted(addresses: Iterable[IPInterface]) -> list[IPInterface]:
    return sorted(addresses, key=address_key)
