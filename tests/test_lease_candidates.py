"""Only the three candidate agents (the nodes whose names hash lowest) try for the MeshConfig-status Lease
every round; the others look at it now and then and take it over only from a dead holder. A fleet of
reporters runs here over one in-memory Lease (tests.test_lease) on a virtual clock, each agent's
requests counted; tests/test_status_realapi_netns.py runs real agents against the real API server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any, cast

from meshd.agent.candidates import Candidacy, lowest_ranked
from meshd.agent.events import EventRecorder
from meshd.agent.meshconfig_report import MeshConfigReporter
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.core.ports import EventRecord
from meshd.datastore.k8s_api import KubeApi
from meshd.datastore.lease import Lease
from tests.support.vclock import run_virtual, virtual_loop
from tests.test_lease import MemoryLeaseApi

NAMES = [f"node{i}" for i in range(10)]
CANDIDATES = lowest_ranked(NAMES)
HOUR = 3600.0


class AgentStore:
    """One agent's status store: the Lease through the shared API, its requests counted."""

    def __init__(self, api: MemoryLeaseApi, name: str, writers: list[str]) -> None:
        self.api, self.name, self.writers, self.requests = api, name, writers, 0
        self.lease = Lease(cast(KubeApi, self), "kube-system", clock=virtual_loop().time)

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, content_type: str | None = None
    ) -> dict[str, Any]:
        self.requests += 1
        return await self.api.call(method, path, body, content_type=content_type)

    async def hold_lease(self, holder: str, *, duration: float) -> bool:
        return await self.lease.hold(holder, duration=duration)

    async def list_meshnodes(self) -> list[dict[str, Any]]:
        return []

    async def write_meshconfig_status(self, status: Mapping[str, Any]) -> None:
        self.writers.append(self.name)

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        pass


class Fleet:
    """A reporter per name, all seeing the node list `names`, sharing one Lease."""

    def __init__(self, names: Sequence[str]) -> None:
        self.api, self.writers = MemoryLeaseApi(), list[str]()
        self.names = sorted(names)
        self.stores: dict[str, AgentStore] = {}
        self.reporters: dict[str, MeshConfigReporter] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, *names: str) -> None:
        loop = virtual_loop()
        for name in names:
            store = self.stores[name] = AgentStore(self.api, name, self.writers)
            rep = self.reporters[name] = MeshConfigReporter(
                store,  # type: ignore[arg-type]
                MeshView(Identity(name=name, public_key=None)),
                EventRecorder(store, clock=loop.time),  # type: ignore[arg-type]
                lambda: None,
                lambda: 1,
                clock=loop.time,
                contends=Candidacy(name, lambda: (1, self.names)),
                rng=random.Random(name),
            )
            self.tasks[name] = asyncio.create_task(rep.run())

    def kill(self, *names: str) -> None:
        """As SIGKILL: the agents stop without giving the Lease up."""
        for name in names:
            self.tasks.pop(name).cancel()

    def holder(self) -> str:
        assert self.api.obj is not None
        return str(self.api.obj["spec"]["holderIdentity"])

    def transitions(self) -> int:
        assert self.api.obj is not None
        return int(self.api.obj["spec"]["leaseTransitions"])

    def requests(self) -> dict[str, int]:
        return {name: store.requests for name, store in self.stores.items()}


def test_candidates_are_the_same_on_every_agent_and_change_when_a_candidate_node_goes() -> None:
    assert len(CANDIDATES) == 3
    shuffled = NAMES[:]
    random.Random(1).shuffle(shuffled)
    assert lowest_ranked(shuffled) == CANDIDATES  # the order the list comes in does not matter
    chosen = {name for name in NAMES if Candidacy(name, lambda: (1, sorted(shuffled)))()}
    assert chosen == CANDIDATES  # every agent decides for itself, and they agree
    gone = sorted(CANDIDATES)[0]
    left = [n for n in NAMES if n != gone]
    after = {name for name in left if Candidacy(name, lambda: (2, left))()}
    assert len(after) == 3 and after > CANDIDATES - {gone}, (CANDIDATES, after)
    assert all(Candidacy(n, lambda: (1, ["a", "b", "c"]))() for n in "abc")  # 3 nodes: all candidates
    assert Candidacy("new", lambda: (1, sorted(NAMES)))()  # not listed yet: it tries, as before


def test_candidacy_is_ranked_again_only_when_names_come_or_go() -> None:
    me = sorted(set(NAMES) - CANDIDATES)[0]
    seen: list[tuple[int, list[str]]] = [(1, sorted(NAMES))]
    candidacy = Candidacy(me, lambda: seen[-1])
    assert not candidacy()
    seen.append((1, sorted([me])))  # the same count: not ranked again (the names are not even read)
    assert not candidacy()
    seen.append((2, sorted([me])))
    assert candidacy()


def test_an_idle_non_candidate_makes_no_lease_request_in_its_rounds_only_at_its_rare_looks() -> None:
    async def main() -> tuple[str, dict[str, int]]:
        fleet = Fleet(NAMES)
        fleet.start(*NAMES)
        await asyncio.sleep(60)
        settled = fleet.requests()
        await asyncio.sleep(HOUR)
        done = fleet.requests()
        return fleet.holder(), {n: done[n] - settled[n] for n in NAMES}

    (holder, hour), _ = run_virtual(main())
    rounds = HOUR / 5
    assert holder in CANDIDATES
    assert all(hour[n] == rounds for n in CANDIDATES), hour  # one request a round: a renewal or a look
    others = [hour[n] for n in NAMES if n not in CANDIDATES]
    # each look is one GET; the gaps are drawn between 20 s and 580 s, 300 s on average
    assert all(1 <= n <= HOUR / 20 for n in others), others
    assert sum(others) <= len(others) * HOUR / 300 * 1.5, others
    assert sum(others) * 30 < len(others) * rounds, "not the 60-fold drop of requests"


def test_a_non_candidate_takes_over_when_every_candidate_is_gone_and_writes_the_status() -> None:
    async def main() -> tuple[str, str, list[str], list[str], int]:
        fleet = Fleet(NAMES)
        fleet.start(*NAMES)
        await asyncio.sleep(60)
        first = fleet.holder()
        fleet.writers.clear()
        fleet.kill(*CANDIDATES)
        await asyncio.sleep(HOUR / 2)
        holding = [n for n, rep in fleet.reporters.items() if rep.holding and n in fleet.tasks]
        before = fleet.requests()[fleet.holder()]
        await asyncio.sleep(60)
        renewals = fleet.requests()[fleet.holder()] - before
        return first, fleet.holder(), holding, fleet.writers, renewals

    (first, holder, holding, writers, renewals), _ = run_virtual(main())
    assert first in CANDIDATES
    assert holder not in CANDIDATES and holding == [holder]
    assert writers == [holder]  # the new holder wrote the MeshConfig status (once: it did not change)
    assert renewals == 60 / 5  # and renews it each round, like any holder


def test_a_non_candidate_writes_an_event_when_it_comes_not_at_its_next_look() -> None:
    async def main() -> tuple[list[float], float, int]:
        loop, fleet = virtual_loop(), Fleet(NAMES)
        fleet.api = LiveHolderApi()
        me = sorted(set(NAMES) - CANDIDATES)[0]
        fleet.start(me)
        recorded: list[float] = []
        fleet.stores[me].record_event = lambda event, **kw: _note(recorded, loop.time())  # type: ignore[method-assign]
        await asyncio.sleep(100.5)
        requests = fleet.stores[me].requests
        fleet.reporters[me].events.emit(EventRecord("Node", me, "KeyCreated", "a key"))
        await asyncio.sleep(1)
        return recorded, loop.time(), fleet.stores[me].requests - requests

    (recorded, now, requests), _ = run_virtual(main())
    assert recorded == [now - 1] and requests == 0  # written at once, without a Lease request


async def _note(into: list[float], when: float) -> None:
    into.append(when)


def test_a_non_candidate_whose_event_writes_fail_for_good_still_sleeps() -> None:
    """Events refused for good (e.g. RBAC): retried each `repeat_after` (30 s), the loop sleeping in between
    as when nothing waits, not woken each 5 s round."""

    async def main() -> tuple[int, int, int]:
        loop, fleet = virtual_loop(), Fleet(NAMES)
        fleet.api = LiveHolderApi()
        me = sorted(set(NAMES) - CANDIDATES)[0]
        fleet.start(me)
        tries: list[float] = []
        fleet.stores[me].record_event = lambda event, **kw: _refuse(tries, loop.time())  # type: ignore[method-assign]
        fleet.reporters[me].events.emit(EventRecord("Node", me, "KeyCreated", "a key"))
        await asyncio.sleep(60)
        wakeups, requests, retried = loop.wakeups, fleet.stores[me].requests, len(tries)
        await asyncio.sleep(HOUR)
        return loop.wakeups - wakeups, fleet.stores[me].requests - requests, len(tries) - retried

    wakeups, looks, retries = run_virtual(main())[0]
    assert HOUR / 30 - 2 <= retries <= HOUR / 30 + 1, retries  # each 30 s, as before
    assert wakeups <= 2 * (HOUR / 60 + looks + retries) + 1, f"{wakeups} wakeups, {retries} retries"


async def _refuse(into: list[float], when: float) -> None:
    into.append(when)
    raise PermissionError("events is forbidden")


def test_a_candidate_does_not_take_a_live_lease_from_a_non_candidate() -> None:
    async def main() -> tuple[str, str, int, int]:
        fleet = Fleet(NAMES)
        others = [n for n in NAMES if n not in CANDIDATES]
        fleet.start(*others)  # no candidate runs
        for _ in range(int(HOUR)):  # until a look finds no Lease and creates it
            if fleet.api.obj is not None:
                break
            await asyncio.sleep(1)
        first, transitions = fleet.holder(), fleet.transitions()  # the candidates come right after
        fleet.start(*CANDIDATES)
        await asyncio.sleep(HOUR / 2)
        return first, fleet.holder(), transitions, fleet.transitions()

    (first, holder, before, after), _ = run_virtual(main())
    assert first not in CANDIDATES
    assert holder == first and after == before  # it kept renewing; nobody took it


class LiveHolderApi(MemoryLeaseApi):
    """A Lease held by an agent elsewhere that keeps renewing it: each read finds a newer renewal."""

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, content_type: str | None = None
    ) -> dict[str, Any]:
        if method == "GET":
            self.version += 1
            spec = {"holderIdentity": "elsewhere", "renewTime": str(self.version), "leaseDurationSeconds": 15}
            self.obj = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
        return await super().call(method, path, body, content_type=content_type)


def test_an_idle_non_candidate_sleeps_between_its_looks() -> None:
    """Its loop wakes for its looks and once a minute to see whether it became a candidate, not each 5 s."""

    async def main() -> tuple[int, int, list[str]]:
        loop, fleet = virtual_loop(), Fleet(NAMES)
        fleet.api = LiveHolderApi()
        me = sorted(set(NAMES) - CANDIDATES)[0]
        fleet.start(me)
        await asyncio.sleep(60)
        wakeups, requests = loop.wakeups, fleet.stores[me].requests
        await asyncio.sleep(HOUR)
        return loop.wakeups - wakeups, fleet.stores[me].requests - requests, fleet.api.calls

    wakeups, looks, calls = run_virtual(main())[0]
    assert set(calls) == {"GET"}, "it only looked, never took the live Lease"
    assert 1 <= looks <= HOUR / 20, looks
    assert wakeups <= HOUR / 60 + looks + 1, f"{wakeups} wakeups in an idle hour ({looks} looks)"
