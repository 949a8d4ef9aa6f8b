"""Dataplane.apply: which runs go to the kernel while WireGuard still takes a run of peer changes.

The ports are recording fakes that hold a peer write open until the test lets it finish: the order in
which a real wireguard-go and kernel see concurrent writes cannot be pinned down otherwise. The real
adapters under the same apply are covered by the netns tests (tests/test_dataplane_netns.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import pytest

from keys.values import PrivateKey
from meshd.agent.dataplane import Dataplane
from meshd.core import actions as a
from meshd.core.ports import Links, RouteTable, WireGuardDevice
from meshd.core.state import DeviceNames, FdbEntry, NeighborEntry, PeerSpec, Route

pytestmark = pytest.mark.timeout(30)  # a regression here hangs on the held peer write: fail, do not wait
VX = "meshd-vxlan"
NET = ipaddress.ip_network("198.19.0.8/29")
GW = ipaddress.ip_address("198.19.0.8")
UNDERLAY = ipaddress.ip_address("198.18.0.2")


class Kernel:
    """Records each write as it starts and ends; `hold` keeps the peer write open until released."""

    def __init__(self, *, fail: set[str] | None = None) -> None:
        self.log: list[str] = []
        self.logged: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.hold = asyncio.Event()
        self.fail = fail or set()

    def note(self, entry: str) -> None:
        self.log.append(entry)
        self.logged[entry].set()

    async def _write(self, what: str) -> None:
        self.note(f"{what} start")
        await asyncio.sleep(0)
        if what in self.fail:
            self.note(f"{what} failed")
            raise OSError(22, f"{what} refused")
        self.note(f"{what} done")

    async def apply_peers(self, changes: Sequence[Any]) -> None:
        self.note("peers start")
        await self.hold.wait()
        if "peers" in self.fail:
            self.note("peers failed")
            raise OSError(22, "peers refused")
        self.note("peers done")

    async def add_neighbors(self, entries: Sequence[NeighborEntry]) -> None:
        await self._write("neighbours")

    async def add_fdbs(self, dev: str, entries: Sequence[FdbEntry]) -> None:
        await self._write("fdb")

    async def replace_all(self, routes: Sequence[Route]) -> None:
        await self._write("routes")


def dataplane(kernel: Kernel) -> Dataplane:
    return Dataplane(
        DeviceNames(),
        links=cast(Links, kernel),
        routes=cast(RouteTable, kernel),
        wireguard=cast(WireGuardDevice, kernel),
    )


STEP_4_5 = (
    a.ReplaceRoute(Route(NET, "meshd0")),  # step 3: into the tunnel before its peer
    a.AddPeer(PeerSpec(PrivateKey.generate().public_key(), None, frozenset({NET}))),
    a.AddNeighbor(NeighborEntry(VX, GW, "02:00:00:00:00:01")),
    a.AddFdb(VX, FdbEntry("02:00:00:00:00:01", UNDERLAY)),
    a.ReplaceRoute(Route(ipaddress.ip_network("198.19.0.16/29"), VX, GW, onlink=True)),  # step 5
)


async def release_when(kernel: Kernel, entry: str) -> None:
    await kernel.logged[entry].wait()
    kernel.hold.set()


async def test_entry_adds_go_beside_the_peer_write_and_routes_wait_for_it() -> None:
    kernel = Kernel()
    await asyncio.gather(dataplane(kernel).apply(STEP_4_5), release_when(kernel, "fdb done"))
    assert kernel.log == [
        "routes start", "routes done",  # the tunnel route is in before the peer write starts
        "peers start",
        "neighbours start", "neighbours done", "fdb start", "fdb done",  # while the peers are being written
        "peers done",
        "routes start", "routes done",  # the route onto VXLAN only once every entry is in
    ]  # fmt: skip


async def test_a_failed_entry_add_waits_for_the_peer_write_and_is_the_error_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = Kernel(fail={"neighbours", "peers"})
    with caplog.at_level(logging.WARNING), pytest.raises(OSError, match="neighbours refused"):
        await asyncio.gather(dataplane(kernel).apply(STEP_4_5), release_when(kernel, "neighbours failed"))
    assert kernel.log[-1] == "peers failed"  # apply returned only after the peer write ended
    assert "fdb start" not in kernel.log and kernel.log.count("routes start") == 1
    assert "peer changes failed as well" in caplog.text


async def test_a_failed_peer_write_stops_the_apply_before_the_routes_move() -> None:
    kernel = Kernel(fail={"peers"})
    with pytest.raises(OSError, match="peers refused"):
        await asyncio.gather(dataplane(kernel).apply(STEP_4_5), release_when(kernel, "fdb done"))
    assert kernel.log.count("routes start") == 1  # the step-5 route never went in


async def test_cancelling_the_apply_cancels_the_peer_write() -> None:
    kernel = Kernel()
    apply = asyncio.ensure_future(dataplane(kernel).apply(STEP_4_5))
    await kernel.logged["fdb done"].wait()
    apply.cancel()
    with pytest.raises(asyncio.CancelledError):
        await apply
    assert "peers done" not in kernel.log and kernel.log.count("routes start") == 1
