"""Issues 11 and 12 together, without a network: the MeshNode carries each WireGuard pair's PSK state
(written when a state changes, never per exchange, never an epoch or fingerprint), and a completed key
rotation is one KeyRotated Event on the Node (file status store)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from keys.values import PublicKey
from meshd.agent.events import EventRecorder
from meshd.agent.meshnode_report import MeshNodeReporter
from meshd.agent.status_wiring import key_rotated
from meshd.agent.view import MeshView
from meshd.core.state import WireGuardReading
from meshd.datastore.file_status import FileStatusStore
from meshd.pq.derive import PairKeys
from meshd.pq.manager import PskManager
from meshd.pq.pairs import PqPair, PqPlan
from meshd.pq.report import pair_states
from meshd.pq.state import PairState
from tests.support.vclock import run_virtual
from tests.test_idle_pq_report import psk_of_b, start
from tests.test_idle_wakeups import HOUR
from tests.test_status_objects import KB, ME, NOW, snap, state


class Unused:
    """The device a PskManager needs; the state report never touches it."""

    name = "meshd0"

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        raise AssertionError("no exchange here")

    async def observe_device(self) -> WireGuardReading | None:
        raise AssertionError("no exchange here")


def manager(clock: list[float], *, enabled: bool = True) -> PskManager:
    assert ME.public_key is not None
    keys = PairKeys("a", "b", ME.public_key, KB)
    pair = PqPair("b", keys, True, ipaddress.ip_address("198.19.1.0"), ipaddress.ip_address("198.19.2.0"))
    m = PskManager(node="a", device=Unused(), clock=lambda: clock[0])
    m.plan = PqPlan(enabled, 20.0, (pair,) if enabled else (), () if enabled else (("b", "disabled"),))
    m.states = {"b": PairState(pair)} if enabled else {}
    return m


def run_steps(
    tmp_path: Path, view: MeshView, rounds: Sequence[Callable[[], None]]
) -> tuple[int, list[str | None]]:
    """Steps the reporter once after each callable in `rounds`; returns the writes and `b`'s psk each time."""

    async def go() -> tuple[int, list[str | None]]:
        store = FileStatusStore(tmp_path)
        rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: NOW)
        seen = []
        for change in rounds:
            change()
            await rep.step()
            obj = json.loads((tmp_path / "meshnodes" / "a.json").read_text())
            peers = {p["node"]: p for p in obj["status"]["peers"]}
            assert "psk" not in peers["c"]  # c is reached over VXLAN: no PSK state
            seen.append(peers["b"].get("psk"))
        await store.close()
        return rep.writes, seen

    return asyncio.run(go())


def test_meshnode_psk_state_is_written_on_change_only() -> None:
    """pending, active (after the first exchange), stale (once b stopped exchanging): one write each; the
    exchanges in between write nothing, and no epoch or fingerprint is ever written."""

    async def main() -> list[Mapping[str, Any]]:
        agent, task = await start()
        for _ in range(7):
            await asyncio.sleep(20)
            agent.exchange()
        await asyncio.sleep(HOUR)
        task.cancel()
        return agent.store.written

    written, _ = run_virtual(main())
    assert [psk_of_b(s) for s in written] == ["pending", "active", "stale"]
    text = json.dumps(written)
    assert "00000007" not in text and "epoch" not in text


def test_no_psk_field_while_post_quantum_is_disabled(tmp_path: Path) -> None:
    m = manager([0.0], enabled=False)
    view = MeshView(ME)
    view.last, view.applied = state(NOW - 5), snap()
    view.psk_states = lambda: pair_states(m)
    assert run_steps(tmp_path, view, [lambda: None]) == (1, [None])


def test_a_completed_rotation_is_one_key_rotated_event(tmp_path: Path) -> None:
    async def go() -> None:
        store = FileStatusStore(tmp_path)
        events = EventRecorder(store)
        hook = key_rotated(events, "a")
        hook("NEWKEY1=")
        assert await events.flush() == 1
        assert await events.flush() == 0  # written once: nothing new
        hook("NEWKEY2=")  # the next rotation: its own Event
        assert await events.flush() == 1
        await store.close()

    asyncio.run(go())
    found = [json.loads(p.read_text()) for p in sorted((tmp_path / "events").glob("*.json"))]
    assert sorted(e["message"].split()[-1] for e in found) == ["NEWKEY1=", "NEWKEY2="]
    assert all(e["reason"] == "KeyRotated" and e["involvedObject"]["name"] == "a" for e in found)
    assert all(e["count"] == 1 and e["type"] == "Normal" for e in found)


class Recording(Unused):
    def __init__(self) -> None:
        self.writes: list[list[tuple[PublicKey, bytes | None]]] = []

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        self.writes.append(list(changes))


def test_our_key_switch_clears_every_psk_first() -> None:
    """A PSK belongs to the pair's keys: before our key changes, every PSK goes (one write), and the pairs
    wait, pending, for the next pass to plan them with our new key."""
    m, device = manager([0.0]), Recording()
    m.device = device
    m._with_psk.add(KB)
    asyncio.run(m.own_key_changing())
    assert device.writes == [[(KB, None)]]
    assert pair_states(m) == {"b": "pending"} and m._due(m.states["b"]) == float("inf")


def test_an_exchange_in_flight_installs_nothing_once_our_key_switches() -> None:
    """An exchange we answer that completes after our switch began (its pair has our old key) installs
    nothing: its PSK would sit on the entry the pair's new session handshakes on, and fail it."""
    m, device = manager([0.0]), Recording()
    m.device = device
    pair = m.states["b"].pair
    asyncio.run(m.own_key_changing())
    with pytest.raises(RuntimeError, match="keys changed"):
        asyncio.run(m._install(pair, bytes(32)))
    assert all(psk is None for write in device.writes for _, psk in write)
