"""The diff from the last one equals the whole diff: after any history of (desired, actual) states (entries
added, removed and changed in every per-key table, equal values rebuilt as new objects, objects shared
between states, devices changed, foreign routes and guards, duplicate keys, a kernel that applied some of
the last actions or none), `rediff` gives exactly `diff(desired, actual)`, in the same order."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keys.values import PublicKey
from meshd.core.diff import diff
from meshd.core.incremental import Planned, replan
from meshd.core.model import Endpoint, MeshConfig, NodeRecord, Snapshot
from meshd.core.moves import Moves
from meshd.core.rediff import Diffed, rediff
from meshd.core.state import (
    ActualState,
    DesiredState,
    FdbEntry,
    IpipDeviceSpec,
    NeighborEntry,
    ObservedIpip,
    ObservedPeer,
    ObservedVxlan,
    ObservedWireGuard,
    PeerSpec,
    Route,
    VxlanDeviceSpec,
    WireGuardDeviceSpec,
)
from tests.fakes import FakeDataplane
from tests.support.clusters import SETTINGS
from tests.test_incremental_properties import _local, histories

KEYS = [PublicKey(bytes([i]) * 32) for i in range(1, 7)]
NETS = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(6)]
ADDRS = [ipaddress.ip_address(f"198.18.0.{i}") for i in range(1, 5)]
MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 5)]
IFACES = st.frozensets(st.sampled_from([ipaddress.ip_interface(f"198.19.{i}.0/32") for i in (0, 9)]))
ENDPOINTS = st.none() | st.builds(Endpoint, st.sampled_from(ADDRS), st.just(51820))
ALLOWED = st.frozensets(st.sampled_from(NETS), max_size=2)
KEEPALIVE = st.sampled_from([0, 25])
ENTRIES: dict[str, st.SearchStrategy[Any]] = {
    "peers": st.builds(PeerSpec, st.sampled_from(KEYS), ENDPOINTS, ALLOWED, KEEPALIVE),
    "observed": st.builds(
        ObservedPeer,
        st.sampled_from(KEYS),
        ENDPOINTS,
        ALLOWED,
        KEEPALIVE,
        st.sampled_from([None, 1.0]),  # the diff reads neither handshakes nor bytes nor the PSK state
        st.sampled_from([0, 7]),
        st.sampled_from([0, 9]),
        st.booleans(),
    ),
    "routes": st.builds(
        Route,
        st.sampled_from(NETS),
        st.sampled_from(["meshd0", "meshd-vxlan", "meshd-ipip", "eth1"]),
        st.none() | st.sampled_from(ADDRS),
        st.booleans(),
    ),
    "fdb": st.builds(FdbEntry, st.sampled_from(MACS), st.sampled_from(ADDRS)),
    "neighbors": st.builds(
        NeighborEntry,
        st.sampled_from(["meshd-vxlan", "other"]),
        st.sampled_from(ADDRS),
        st.sampled_from(MACS),
    ),
    "guards": st.sampled_from(NETS),
}
KEY_OF: dict[str, Callable[[Any], object]] = {  # the key a table holds one entry under
    "peers": attrgetter("public_key"),
    "observed": attrgetter("public_key"),
    "routes": attrgetter("dst"),
    "fdb": attrgetter("mac"),
    "neighbors": attrgetter("dev", "ip"),
    "guards": lambda net: net,
}
EDITS = {"peers": "allowed_ips", "observed": "allowed_ips", "routes": "dev", "fdb": "dst", "neighbors": "mac"}
TABLES = {  # table -> the kind of its entries
    "d.peers": "peers",
    "a.observed": "observed",
    "d.routes": "routes",
    "a.routes": "routes",
    "a.foreign_routes": "routes",
    "d.fdb": "fdb",
    "a.fdb": "fdb",
    "d.neighbors": "neighbors",
    "a.neighbors": "neighbors",
    "d.guards": "guards",
    "a.guards": "guards",
}
DEVICES: dict[str, st.SearchStrategy[Any]] = {
    "d.wireguard": st.none()
    | st.builds(WireGuardDeviceSpec, st.just("meshd0"), st.sampled_from(KEYS[:2]), st.just(51820), st.just(1420), IFACES),
    "a.wireguard": st.none()
    | st.builds(
        ObservedWireGuard,
        st.sampled_from(["meshd0", "other0"]),
        st.sampled_from([None, *KEYS[:2]]),
        st.sampled_from([51820, 0]),
        st.sampled_from([1420, 1380]),
        IFACES,
    ),
    "d.vxlan": st.none() | st.builds(VxlanDeviceSpec, st.just("meshd-vxlan"), st.just(1), st.just(4789), st.just(ADDRS[0]), st.just(1450), IFACES),
    "a.vxlan": st.none()
    | st.builds(
        ObservedVxlan,
        st.just("meshd-vxlan"),
        st.sampled_from([1, 2]),
        st.just(4789),
        st.just(ADDRS[0]),
        st.sampled_from([1450, 1400]),
        st.just("02:00:00:00:00:ff"),
        IFACES,
    ),
    "d.ipip": st.none() | st.builds(IpipDeviceSpec, st.just("meshd-ipip"), st.just(ADDRS[0]), st.just(1480), IFACES),
    "a.ipip": st.none() | st.builds(ObservedIpip, st.just("meshd-ipip"), st.sampled_from([None, ADDRS[0]]), st.just(1480), IFACES),
}  # fmt: skip
EVERY = float("inf")  # cut the states down however many keys changed: the cut path runs whenever it can
STEPS = st.sampled_from(
    [
        "add",
        "add",
        "remove",
        "remove",
        "change",
        "rebuild",
        "device",
        "converge",
        "converge",
        "none",
        "duplicate",
        "edit",
        "edit",
    ]
)


@dataclass
class Model:
    """One side's tables and devices, each table kept as the object the states share until it changes."""

    tables: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, Any] = field(default_factory=dict)

    def states(self) -> tuple[DesiredState, ActualState]:
        t, dev = self.tables, self.devices
        desired = DesiredState(
            wireguard=dev["d.wireguard"],
            peers=t["d.peers"],
            vxlan=dev["d.vxlan"],
            fdb=t["d.fdb"],
            neighbors=t["d.neighbors"],
            ipip=dev["d.ipip"],
            routes=t["d.routes"],
            guards=t["d.guards"],
        )
        wireguard = dev["a.wireguard"]
        actual = ActualState(
            wireguard=replace(wireguard, peers=t["a.observed"]) if wireguard is not None else None,
            vxlan=dev["a.vxlan"],
            fdb=t["a.fdb"],
            neighbors=t["a.neighbors"],
            ipip=dev["a.ipip"],
            routes=t["a.routes"],
            foreign_routes=t["a.foreign_routes"],
            guards=t["a.guards"],
        )
        return desired, actual


def _collection(table: str, entries: list[Any]) -> Any:
    return tuple(entries) if table in ("d.peers", "a.observed") else frozenset(entries)


def _observed_devices(wanted: dict[str, Any]) -> dict[str, Any]:
    wg, vx, ipip = wanted["d.wireguard"], wanted["d.vxlan"], wanted["d.ipip"]
    return {
        "a.wireguard": wg and ObservedWireGuard(wg.name, wg.public_key, wg.listen_port, wg.mtu, wg.addresses),
        "a.vxlan": vx
        and ObservedVxlan(vx.name, vx.vni, vx.port, vx.local, vx.mtu, "02:00:00:00:00:ff", vx.addresses),
        "a.ipip": ipip and ObservedIpip(ipip.name, ipip.local, ipip.mtu, ipip.addresses),
    }


def _rebuilt(kind: str, entry: Any) -> Any:
    """An equal entry as a new object; an observed peer as a device read after traffic finds it."""
    if kind == "guards":
        return ipaddress.ip_network(str(entry))
    return replace(entry, rx_bytes=entry.rx_bytes + 1) if kind == "observed" else copy.copy(entry)


def _step(draw: st.DrawFn, model: Model) -> None:
    step, table = draw(STEPS), draw(st.sampled_from(sorted(TABLES)))
    entries = list(model.tables[table])
    kind = TABLES[table]
    if step in ("add", "duplicate"):  # add: a new entry, or one that takes the place of its key's
        entry, key = draw(ENTRIES[kind]), KEY_OF[kind]
        keep = step == "duplicate"
        entries = [*(e for e in entries if keep or key(e) != key(entry)), entry]
    elif step == "edit" and entries and kind != "guards":  # one field of an entry, its key kept
        i = draw(st.integers(0, len(entries) - 1))
        entries[i] = replace(entries[i], **{EDITS[kind]: getattr(draw(ENTRIES[kind]), EDITS[kind])})
    elif step in ("remove", "change") and entries:
        i = draw(st.integers(0, len(entries) - 1))
        entries[i : i + 1] = [draw(ENTRIES[kind])] if step == "change" else []
    elif step == "rebuild":  # new objects, equal as the diff sees them (a plan builds its entries afresh)
        entries = [_rebuilt(kind, e) for e in entries]
    elif step == "device":
        name = draw(st.sampled_from(sorted(DEVICES)))
        model.devices[name] = draw(DEVICES[name])
        return
    elif step == "converge":  # the kernel holds what is wanted (devices too), sharing its objects
        model.devices.update(_observed_devices(model.devices))
        for kind in ("routes", "fdb", "neighbors", "guards"):
            model.tables[f"a.{kind}"] = model.tables[f"d.{kind}"]
        model.tables["a.observed"] = tuple(
            ObservedPeer(p.public_key, p.endpoint, p.allowed_ips, p.persistent_keepalive)
            for p in model.tables["d.peers"]
        )
        return
    else:
        return
    model.tables[table] = _collection(table, entries)


@st.composite
def state_histories(draw: st.DrawFn) -> list[tuple[DesiredState, ActualState]]:
    model = Model()
    for table, kind in TABLES.items():
        entries = st.lists(ENTRIES[kind], max_size=5, unique_by=KEY_OF[kind])
        model.tables[table] = _collection(table, draw(entries))
    for name, strategy in DEVICES.items():
        model.devices[name] = draw(strategy)
    history = [model.states()]
    for _ in range(draw(st.integers(1, 20))):
        for _ in range(draw(st.integers(1, 3))):
            _step(draw, model)
        history.append(model.states())
    return history


@given(state_histories())
@settings(SETTINGS, max_examples=200)  # small states, long histories: 200 examples take a few seconds
def test_the_diff_from_the_last_one_equals_the_whole_diff_after_any_history(
    history: list[tuple[DesiredState, ActualState]],
) -> None:
    moves = Moves()
    last: Diffed | None = None
    for desired, actual in history:
        last = rediff(last, desired, actual, moves, whole_past=EVERY)
        assert last.actions == diff(desired, actual)


@given(histories(), st.data())
@SETTINGS
def test_the_diff_from_the_last_one_equals_the_whole_diff_over_plans_and_a_kernel_that_applies_part(
    history: list[tuple[tuple[NodeRecord, ...], MeshConfig]], data: st.DataObject
) -> None:
    """Planned states (shared values) against a kernel that applied some of the last actions."""
    moves = Moves()
    fake, planned, last = FakeDataplane(), None, None
    for records, config in history:
        planned = replan(planned, Snapshot.of(records, config), _local(records), moves)
        actual = fake.observe()
        last = rediff(last, planned.state, actual, moves, whole_past=EVERY)
        assert last.actions == diff(planned.state, actual)
        fake.apply(last.actions[: data.draw(st.integers(0, len(last.actions)))])
    assert isinstance(planned, Planned)
