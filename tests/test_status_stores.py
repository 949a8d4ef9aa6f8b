"""The status side's stores and the MeshConfig-status reporter: the file lock hands over when its holder
goes, orphan MeshNodes are pruned by the holder, the reporter writes only on change and lists sparingly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keys.values import PrivateKey
from meshd.agent.events import EventRecorder
from meshd.agent.meshconfig_report import MeshConfigReporter
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.ports import EventRecord
from meshd.datastore.file_status import FileStatusStore


def test_file_lock_hands_over_when_the_holder_closes(tmp_path: Path) -> None:
    async def go() -> None:
        a, b = FileStatusStore(tmp_path), FileStatusStore(tmp_path)
        assert await a.hold_lease("a", duration=15)
        assert not await b.hold_lease("b", duration=15)
        assert await a.hold_lease("a", duration=15)  # renewing is holding
        await a.close()  # as if the process died: the kernel drops the lock
        assert await b.hold_lease("b", duration=15)
        await b.close()

    asyncio.run(go())


def test_holder_prunes_meshnodes_of_nodes_that_are_gone(tmp_path: Path) -> None:
    async def go() -> list[str]:
        store = FileStatusStore(tmp_path)
        (tmp_path / "nodes").mkdir()
        (tmp_path / "nodes" / "a.json").write_text("{}")
        await store.write_meshnode("a", {"summary": {"peers": 0}})
        await store.write_meshnode("gone", {"summary": {"peers": 0}})
        assert len(await store.list_meshnodes()) == 2  # not the holder: nothing removed
        assert await store.hold_lease("a", duration=15)
        names = [o["metadata"]["name"] for o in await store.list_meshnodes()]
        await store.close()
        return names

    assert asyncio.run(go()) == ["a"]
    written = json.loads((tmp_path / "meshnodes" / "a.json").read_text())
    assert written["apiVersion"] == "meshd.io/v1alpha1" and written["kind"] == "MeshNode"


class FakeStore:
    def __init__(self) -> None:
        self.held, self.generation, self.lists, self.status_writes = True, 3, 0, 0
        self.events: list[EventRecord] = []

    async def hold_lease(self, holder: str, *, duration: float) -> bool:
        return self.held

    async def list_meshnodes(self) -> list[dict[str, Any]]:
        self.lists += 1
        c = [{"type": "Ready", "status": "True"}, {"type": "Encrypted", "status": "True"}]
        return [{"metadata": {"name": "a"}, "status": {"observedGeneration": 3, "conditions": c}}]

    async def write_meshconfig_status(self, status: Mapping[str, Any]) -> None:
        self.status_writes += 1

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        self.events.append(event)


def test_reporter_writes_on_change_and_lists_sparingly() -> None:
    clock = [1000.0]
    store = FakeStore()
    view = MeshView(Identity(name="a", public_key=PrivateKey.generate().public_key()))
    events = EventRecorder(store, clock=lambda: clock[0])  # type: ignore[arg-type]
    errors: list[str | None] = [None]
    rep = MeshConfigReporter(
        store,  # type: ignore[arg-type]
        view,
        events,
        lambda: errors[0],
        lambda: store.generation,
        clock=lambda: clock[0],
    )

    def step(seconds: float = 2) -> bool:
        clock[0] += seconds
        return asyncio.run(rep.step())

    assert step() and store.status_writes == 1
    assert not step() and store.status_writes == 1  # unchanged: no write
    for _ in range(40):  # a minute and more of rounds
        step()
    lists = store.lists
    for _ in range(10):  # 20 s of rounds with nothing new: two lists, not ten
        step()
    assert store.lists - lists == 2
    errors[0] = "spec.fallback: expected one of VXLAN, IPIP, None"
    assert step() and store.status_writes == 2  # rejected: counted and written at once
    asyncio.run(events.flush())
    assert [e.reason for e in store.events] == ["MeshConfigRejected"]
    store.held = False
    assert not step() and not rep.holding


def test_a_restarted_agent_rewrites_nothing_unchanged(tmp_path: Path) -> None:
    from meshd.agent.meshnode_report import MeshNodeReporter
    from tests.test_status_objects import ME, NOW, snap, state

    async def run(view: MeshView) -> tuple[int, bool]:
        store = FileStatusStore(tmp_path)
        rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: NOW)
        changed = await rep.step()
        await store.close()
        return rep.writes, changed

    view = MeshView(ME)
    view.last, view.applied = state(NOW - 5), snap()
    assert asyncio.run(run(view)) == (1, True)
    again = MeshView(ME)  # a new process: same kernel, same snapshot
    again.last, again.applied = state(NOW - 5), snap()
    assert asyncio.run(run(again)) == (0, False)


def test_graph_command_writes_dot_and_svg_and_refuses_bad_input(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from meshd.cli.main import main

    (tmp_path / "meshnodes").mkdir()
    for name, peer in (("n-a", "n-b"), ("n-b", "n-a")):
        obj = {"metadata": {"name": name}, "status": {"peers": [{"node": peer, "transport": "VXLAN"}]}}
        (tmp_path / "meshnodes" / f"{name}.json").write_text(json.dumps(obj))
    assert main(["graph", "--datastore", f"file:{tmp_path}", "--output", str(tmp_path / "g.dot")]) == 0
    assert '"n-a" -- "n-b"' in (tmp_path / "g.dot").read_text()
    assert main(["graph", "--datastore", f"file:{tmp_path}", "--output", str(tmp_path / "g.svg")]) == 0
    texts = {"".join(e.itertext()).strip() for e in ET.parse(tmp_path / "g.svg").iter()}
    assert {"n-a", "n-b", "VXLAN"} <= texts
    assert main(["graph", "--datastore", f"file:{tmp_path}/nope", "--output", str(tmp_path / "x.svg")]) == 2
    assert main(["graph", "--datastore", "etcd", "--output", str(tmp_path / "x.svg")]) == 2
    assert main(["graph", "--datastore", f"file:{tmp_path}", "--output", str(tmp_path / "x.gif")]) == 2


def test_a_peer_that_never_handshakes_is_re_read_less_and_less_often(tmp_path: Path) -> None:
    """A standby WireGuard peer carries no traffic and never handshakes: its "Never" is re-read from the
    device every 5 s for the first minute after the status was written, then after 10 and 20 s more, then
    no longer (not every 5 s forever): the resync passes read the device, and a handshake they see is
    written at once."""
    from meshd.agent.meshnode_report import MeshNodeReporter
    from meshd.core.state import ObservedPeer, WireGuardReading
    from tests.test_status_objects import KB, ME, NOW, snap, state

    clock = [NOW]
    handshake: list[float | None] = [None]
    reads: list[float] = []

    class Device:
        async def observe_device(self) -> WireGuardReading:
            reads.append(clock[0] - NOW)
            return WireGuardReading(
                None, 0, (ObservedPeer(KB, None, frozenset(), last_handshake=handshake[0]),)
            )

    async def run() -> list[dict[str, str]]:
        store = FileStatusStore(tmp_path)
        view = MeshView(ME, Device())
        view.last, view.applied = state(None), snap()
        rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: clock[0])
        for _ in range(150):
            await rep.step()
            clock[0] += 1
        handshake[0] = clock[0] - 1
        for _ in range(60):
            await rep.step()
            clock[0] += 1
        assert any("handshake" in p for p in (rep._written or {})["peers"]), "no re-read any more"
        view.last = state(handshake[0])  # a resync pass read the device: a new view
        await rep.step()
        await store.close()
        return list((rep._written or {})["peers"])

    peers = asyncio.run(run())
    assert reads[:12] == [1 + 5 * i for i in range(12)], "every 5 s for a minute"
    assert reads[12:] == [61, 71, 91], "then 10 and 20 s apart, then no more"
    assert all("handshake" not in p for p in peers), "Never cleared by the resync's reading"


def test_a_handshake_that_turns_stale_is_written_though_the_device_reads_the_same(tmp_path: Path) -> None:
    """A re-read that finds the device exactly as before builds no status, unless a handshake crossed the
    3-minute line since the last build: then `Stale` is written."""
    from meshd.agent.meshnode_report import MeshNodeReporter
    from meshd.core.meshnode import STALE_HANDSHAKE
    from meshd.core.model import Transport
    from meshd.core.state import (
        ActualState,
        DesiredState,
        ObservedPeer,
        ObservedWireGuard,
        PairDecision,
        PeerSpec,
        WireGuardReading,
    )
    from tests.test_status_objects import KB, KC, ME, NOW, snap

    clock = [NOW]
    shook = NOW - 60  # c handshook a minute ago; b never did (so the reporter keeps re-reading)
    live = (
        ObservedPeer(KB, None, frozenset()),
        ObservedPeer(KC, None, frozenset(), last_handshake=shook),
    )

    class Device:
        async def observe_device(self) -> WireGuardReading:
            return WireGuardReading(None, 0, live)  # always the same objects

    pairs = (
        PairDecision("b", Transport.WIREGUARD, "encrypted with WireGuard"),
        PairDecision("c", Transport.WIREGUARD, "encrypted with WireGuard"),
    )
    desired = DesiredState(
        peers=(PeerSpec(KB, None, frozenset(), node="b"), PeerSpec(KC, None, frozenset(), node="c")),
        pairs=pairs,
    )
    actual = ActualState(wireguard=ObservedWireGuard("meshd0", ME.public_key, 51820, 1420, peers=live))

    def handshakes(rep: MeshNodeReporter) -> dict[str, str | None]:
        return {p["node"]: p.get("handshake") for p in (rep._written or {})["peers"]}

    async def run() -> list[dict[str, str | None]]:
        store = FileStatusStore(tmp_path)
        view = MeshView(ME, Device())
        view.last, view.applied = (desired, actual), snap()
        rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: clock[0])
        seen = []
        for _ in range(int(STALE_HANDSHAKE) + 10):
            await rep.step()
            seen.append(handshakes(rep))
            clock[0] += 1
        await store.close()
        return seen

    seen = asyncio.run(run())
    assert seen[0] == {"b": "Never", "c": None}
    assert seen[-1] == {"b": "Never", "c": "Stale"}


async def test_the_meshnode_is_written_once_a_burst_of_passes_pauses(tmp_path: Path) -> None:
    """A round waits while passes keep coming, then writes the last pass's status."""
    from meshd.agent.meshnode_report import MeshNodeReporter
    from tests.test_status_objects import ME, NOW, snap, state

    store = FileStatusStore(tmp_path)
    view = MeshView(ME)
    view.last, view.applied = state(NOW - 5), snap()
    rep = MeshNodeReporter(store, view, EventRecorder(store), clock=lambda: NOW, quiet=1.0, defer=600.0)

    async def burst() -> None:
        for _ in range(5):
            view.passed_at = time.monotonic()
            await asyncio.sleep(0.05)
        view.last = state(NOW - 1)  # the burst's last pass

    passes = asyncio.create_task(burst())
    await asyncio.sleep(0)
    await rep.after_passes()
    assert passes.done(), "the round waited for the passes to pause"
    assert await rep.step() and rep.writes == 1
    await store.close()
