"""Runs the PSK exchanges of this node: plans the pairs after each reconcile pass, listens on our inner
address (held to the WireGuard device), initiates for the pairs where our name is the lower one when a
pair has no PSK yet or its PSK is `pskRotationInterval` old, retries failures within seconds, installs
PSKs on the device and clears them from pairs that stop taking part. PSKs live only in the device: this
object keeps fingerprints, epochs and ages, never a key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from keys.values import PublicKey
from meshd.core.model import IPAddress, LocalNode, Snapshot
from meshd.core.moves import Moves
from meshd.core.state import DesiredState, WireGuardReading
from meshd.pq import sockets
from meshd.pq.exchange import Accepted, ExchangeError, Outcome, failure, initiate, refuse, respond
from meshd.pq.follow import PqPlanned, replan_pairs
from meshd.pq.pairs import PqPair, PqPlan
from meshd.pq.state import PairState, PskDevice
from meshd.pq.watch import StateWatch
from meshd.pq.wire import Init
from meshd.wake import sleep_until

log = logging.getLogger(__name__)
MAX_RETRY = 8.0  # seconds: far inside WireGuard's 60 s between a session's rekey and its rejection
SETTLE = 2.0  # seconds a pair whose keys changed waits before its first exchange (its handshakes settle)


@dataclass
class PskManager:
    node: str
    device: PskDevice
    port: int = sockets.PSK_PORT
    timeout: float = 10.0
    clock: Callable[[], float] = time.monotonic
    moves: Moves = field(default_factory=Moves)  # what moved: the agent's (its own when not given)
    plan: PqPlan = field(default_factory=lambda: PqPlan(False, 120.0))
    states: dict[str, PairState] = field(default_factory=dict)
    exchanges: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _with_psk: set[PublicKey] = field(default_factory=set)  # peers we may have left a PSK on
    _seen: set[PublicKey] = field(default_factory=set)  # off peers checked once for an earlier run's PSK
    _read: bool = False  # the device was read once: peers that came later hold no earlier run's PSK
    _strangers: set[str] = field(default_factory=set)  # addresses refused (warned about once)
    _servers: list[asyncio.Server] = field(default_factory=list)  # one per inner address (family)
    _bound: tuple[frozenset[IPAddress], int] | None = None
    _switching: bool = False  # our key is changing: no install until the next pass plans the new pairs
    _taken: tuple[object, ...] | None = None  # the view the last update took in full
    _adopted: asyncio.Event = field(default_factory=asyncio.Event)  # pairs changed, an exchange ended
    _planned: PqPlanned | None = None  # the last plan, for the next (meshd.pq.follow)
    watch: StateWatch = field(init=False)  # tells when a pair's reported state changes

    def __post_init__(self) -> None:
        self.watch = StateWatch(self.clock, self.plan.interval)

    # --- after each pass ------------------------------------------------------------------------

    async def update(
        self,
        snapshot: Snapshot,
        local: LocalNode,
        desired: DesiredState,
        found: WireGuardReading | None = None,
    ) -> None:
        """Take the pass's view: which pairs take part. Never raises (it runs inside the pass). The same
        view as the last update that went through (a verifying pass) changes nothing: not taken again.
        `found`: the device as the pass read it before its changes, which says which peers an earlier run
        left a PSK on (a peer the pass added has none); without it the device is read."""
        view = (snapshot.nodes, snapshot.config, local, desired)
        if self._taken is not None and all(a is b or a == b for a, b in zip(view, self._taken, strict=True)):
            return  # (a pass builds its LocalNode afresh: equal, not the same object)
        last = self._planned if self._taken is not None else None  # else the last one did not go through
        self._taken = None
        try:
            planned = self._planned = replan_pairs(last, snapshot, local, desired, self.moves)
            self.plan = planned.plan
            self._adopt(planned)
            off = planned.off_keys()  # the peers decided again: the others were seen and cleared before
            unseen = {k for _, k in off if k not in self._seen}
            held = await self._held(found) if unseen and not self._read else frozenset()  # one read, once
            self._read = self._read or bool(unseen)
            await self._clear([(p, k) for p, k in off if k in self._with_psk or k in held])
            self._seen |= unseen
            await self._listen(frozenset(planned.addrs))
            self._taken = view
        except Exception:  # the mesh must not suffer from the PSK layer: log, try again next pass
            log.exception("updating the post-quantum PSK pairs failed")

    def _adopt(self, planned: PqPlanned) -> None:
        """Take the plan's pairs: a pair whose keys changed starts again. Only the pairs the plan decided
        again are looked at (every one when it was made whole)."""
        self._switching = False
        self._adopted.set()  # `run` looks at the pairs again
        if planned.touched is None:
            states, self.states = self.states, {}
            for pair in planned.plan.pairs:
                self._take(pair, states.pop(pair.peer, None))
            for gone in states.values():
                self._end(gone)
            self.watch.reset(((n, st.since) for n, st in self.states.items()), planned.plan.interval)
            return
        for name in sorted(planned.touched):
            now, old = planned.pair_of(name), self.states.pop(name, None)
            if now is not None:
                self._take(now, old)
            elif old is not None:
                self._end(old)
        if planned.touched:
            self.watch.changed.set()

    def _take(self, pair: PqPair, old: PairState | None) -> None:
        if old is not None and old.pair == pair:
            self.states[pair.peer] = old
            return
        if old is not None:
            self._end(old)
        settle = self.clock() + SETTLE if old is not None else 0.0  # a key rotation: let it settle
        self.states[pair.peer] = PairState(pair, epoch=old.epoch if old else 0, next_try=settle)
        self._with_psk.add(pair.peer_key)  # its device entry may hold a PSK of an earlier run

    def _end(self, st: PairState) -> None:
        """A pair that went or starts again: its exchange stops, its PSK no longer counts as active."""
        if st.task is not None:
            st.task.cancel()
        self.watch.dropped(st.pair.peer)

    async def own_key_changing(self) -> None:
        """Our WireGuard key is about to change (a key rotation switches): every pair becomes a new one, so
        clear every PSK now, before the new key is live. Both ends of each new pair then start without a
        PSK (the peer makes a new entry for our new key), then exchange (the next pass plans them)."""
        self._switching, self._taken = True, None  # an exchange in flight must not install after the clear
        for st in self.states.values():
            if st.task is not None:
                st.task.cancel()
            st.since, st.next_try = None, float("inf")  # no exchange until the next pass adopts the new pair
        self.watch.reset((), self.plan.interval)  # every pair pending
        peers = sorted({st.pair.peer_key for st in self.states.values()} | self._with_psk, key=str)
        try:
            if peers:
                await self.device.set_preshared_keys([(k, None) for k in peers])
            self._with_psk.clear()
        except Exception:  # the rotation goes on: the stale PSKs are replaced by the next exchanges
            log.exception("clearing the preshared keys before our key switch failed")

    async def _held(self, found: WireGuardReading | None) -> frozenset[PublicKey]:
        """Peers whose device entry holds a PSK (an earlier run may have set it)."""
        reading = found if found is not None else await self.device.observe_device()
        return frozenset(p.public_key for p in reading.peers if p.has_psk) if reading else frozenset()

    async def _clear(self, peers: list[tuple[str, PublicKey]]) -> None:
        """Clear the PSKs of pairs that take no part, in one write (an earlier run may have set them)."""
        if not peers:
            return
        log.info("no post-quantum PSK with %s: clearing preshared keys", ", ".join(p for p, _ in peers))
        await self.device.set_preshared_keys([(k, None) for _, k in peers])
        for _, key in peers:
            self._with_psk.discard(key)
            self._seen.add(key)

    async def _listen(self, addrs: frozenset[IPAddress]) -> None:
        try:
            index = socket.if_nametoindex(self.device.name)
        except OSError:
            index = 0
        want = (addrs, index) if addrs and index else None
        if want == self._bound:
            return
        await self.close()
        if want is None:
            return
        for addr in sorted(addrs, key=str):
            sock = sockets.listen_socket(addr, self.device.name, self.port)
            self._servers.append(await asyncio.start_server(self._serve, sock=sock))
        self._bound = want
        shown = ", ".join(map(str, addrs))
        log.info("PSK exchange listening on %s port %d over %s", shown, self.port, self.device.name)

    async def close(self) -> None:
        servers, self._servers, self._bound = self._servers, [], None
        for server in servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # --- the schedule ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Starts each pair's exchange when due (we initiate where our name is the lower one). In between it
        sleeps until the next one is due, a pass changes the pairs or an exchange ends."""
        while not stop.is_set():
            now, due = self.clock(), math.inf
            self._adopted.clear()
            for st in self.states.values():
                if not st.pair.initiator or (st.task is not None and not st.task.done()):
                    continue
                if now >= self._due(st):
                    st.task = asyncio.create_task(self._initiate(st))
                else:
                    due = min(due, self._due(st))
            await sleep_until(due if math.isfinite(due) else None, self.clock, stop, self._adopted)
        for st in self.states.values():
            if st.task is not None:
                st.task.cancel()
        await self.close()

    def _due(self, st: PairState) -> float:
        if st.since is None or st.failures:
            return st.next_try
        return st.since + self.plan.interval

    async def _initiate(self, st: PairState) -> None:
        """One exchange as the initiator (one at a time per pair: `run` starts it only when none runs)."""
        pair = st.pair
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await sockets.connect(
                    pair.local_addr, pair.peer_addr, self.device.name, self.port
                )
                try:
                    install = partial(self._install, pair)
                    outcome = await initiate(reader, writer, pair.keys, epoch=st.epoch + 1, install=install)
                finally:
                    writer.close()
        except (ExchangeError, OSError, TimeoutError) as exc:
            self._failed(st, exc)
        else:
            self._done(st, outcome)
        finally:
            self._adopted.set()  # `run` looks for the pair's next exchange

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = sockets.peer_address(writer)
        st = next(
            (s for s in self.states.values() if s.pair.peer_addr == addr and not s.pair.initiator), None
        )
        try:
            if st is None:
                await refuse(writer, f"no pair of {self.node} expects an exchange from {addr}")
                raise ExchangeError("refused", f"unexpected exchange from {addr}")
            async with asyncio.timeout(self.timeout):  # no lock: a stalled stranger delays no exchange
                outcome = await respond(reader, writer, partial(self._accept, st))
            self._done(st, outcome)
        except (ExchangeError, OSError, TimeoutError) as exc:
            if isinstance(exc, ExchangeError) and exc.reason == "protocol":
                await refuse(writer, str(exc))  # the sender learns what was wrong with its message
            self._failed(st, exc, who=str(addr))
        finally:
            writer.close()

    def _accept(self, st: PairState, init: Init) -> Accepted | str:
        keys = st.pair.keys
        if (init.initiator, init.responder) != (keys.initiator, keys.responder):
            return f"{self.node} expects {keys.initiator} -> {keys.responder} from this address"
        return Accepted(keys, st.epoch + 1, partial(self._install, st.pair))

    async def _install(self, pair: PqPair, psk: bytes) -> None:
        """Set the PSK, unless the pair's keys changed meanwhile (a key rotation's switch): a PSK of the
        old pair on the entry the new pair uses would fail its first handshake, which carries traffic."""
        current = self.states.get(pair.peer)
        if self._switching or current is None or current.pair != pair:
            raise RuntimeError("the pair's WireGuard keys changed during the exchange")
        self._with_psk.add(pair.peer_key)
        await self.device.set_preshared_keys([(pair.peer_key, psk)])

    def _done(self, st: PairState, outcome: Outcome) -> None:
        st.epoch, st.fingerprint, st.since = outcome.epoch, outcome.fingerprint, self.clock()
        st.failures, st.error, st.next_try = 0, None, 0.0
        if self.states.get(st.pair.peer) is st:
            self.watch.installed(st.pair.peer, st.since)
        self.exchanges += 1
        log.info(
            "new preshared key with %s (epoch %d, fingerprint %s)",
            st.pair.peer,
            outcome.epoch,
            outcome.fingerprint,
        )

    def _failed(self, st: PairState | None, exc: BaseException, *, who: str = "") -> None:
        reason, detail = failure(exc)
        self.errors[reason] += 1
        if st is None:  # a stranger: warned about once per address, counted always
            level = logging.DEBUG if who in self._strangers else logging.WARNING
            log.log(level, "PSK exchange from %s refused: %s", who, detail)
            self._strangers.add(who)
            return
        st.failures += 1
        st.error = f"{reason}: {detail}"[:200]
        st.next_try = self.clock() + min(2.0 ** (st.failures - 1), MAX_RETRY)
        level = logging.WARNING if st.failures in (1, 10) else logging.DEBUG
        log.log(level, "PSK exchange with %s failed (%d in a row): %s", st.pair.peer, st.failures, st.error)
