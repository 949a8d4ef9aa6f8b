"""Scheduled key rotation, the agent's side: when to rotate (interval with jitter, or `meshd keys rotate`),
the key files (keys.rotation), the helper link, and the hooks a reconcile pass calls. The protocol itself is
pure (meshd.core.rotation); this module does its I/O and keeps its state between passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from keys.rotation import commit_next, discard_next, prepare_next
from keys.store import NodeKey, load
from keys.values import PublicKey
from meshd.agent.helper_link import HelperLink, RecentPeers, helper_port
from meshd.core import rotation as r
from meshd.core.local import Identity
from meshd.core.model import LocalNode, Node, Snapshot
from meshd.core.rotation_record import ROTATION, ROTATION_ACK, Phase, RotationAck, RotationRecord
from meshd.core.state import DesiredState, WireGuardReading
from meshd.errors import TransientError
from meshd.wake import Alarm
from overlay.wireguard import OVERHEAD

log = logging.getLogger(__name__)
JITTER = 0.1
"""Each rotation comes up to this fraction of the interval early (at most an hour), so nodes spread out."""


@dataclass
class RotationDriver:
    name: str
    key_file: Path
    main: str  # the main WireGuard link's name
    helper: HelperLink
    rekey: Callable[[NodeKey], None]  # the main device must carry this key from now on
    observe_main: Callable[[], Awaitable[WireGuardReading | None]]  # a fresh read of the main device
    registry: CollectorRegistry
    trigger: Callable[[], None] = lambda: None  # asks for a pass (set once the loop exists)
    on_rotated: Callable[[str], None] = lambda key: None  # a rotation completed (the new public key)
    on_switch: Callable[[], Awaitable[None]] | None = None  # runs just before the main device's key changes
    timeout: float = 10.0  # how long a phase waits for a silent peer
    grace: float = 3.0  # how long an unneeded helper link stays (packets in flight)
    stale_after: float = 60.0  # a peer's rotation record unchanged this long is ignored
    clock: Callable[[], float] = time.time
    own: r.OwnRotation | None = None
    plan: r.HelperPlan = field(default_factory=r.HelperPlan)
    _interval: float = 0.0
    _due: float | None = None
    _requests: list[asyncio.Future[str]] = field(default_factory=list)
    _helper_used: float = 0.0
    _helper_up: bool = True  # unknown at start: an earlier agent may have left one
    _port: int = 0
    _records: dict[str, tuple[RotationRecord, float]] = field(default_factory=dict)
    _reported: frozenset[str] = frozenset()
    _resumed: bool = False  # our record's ack was read once (after a restart)
    _mtu: int = 0
    _recent: RecentPeers = field(default_factory=RecentPeers)  # helper peers, last needed
    _main_seen: set[tuple[str, PublicKey | None]] = field(
        default_factory=set
    )  # (node, its new key) in session
    _period: float = 0.5
    _busy: float = 0.1

    def __post_init__(self) -> None:
        self._helper_used = self.clock()
        self._alarm = Alarm(self.clock)
        self._count = Counter(
            "meshd_key_rotations", "Completed rotations of this node's WireGuard key", registry=self.registry
        )

    # --- hooks of the reconcile pass ------------------------------------------------------------------

    async def before_plan(self, snapshot: Snapshot, local: LocalNode, identity: Identity) -> Identity | None:
        """Advance the protocol and set up the helper. Returns our new identity when the key switched."""
        try:
            return await self._advance(snapshot, local, identity)
        finally:
            self._rearm()

    async def _advance(self, snapshot: Snapshot, local: LocalNode, identity: Identity) -> Identity | None:
        now, switched = self.clock(), None
        snapshot = r.ignoring(snapshot, self._stale(snapshot, now))
        self._schedule(snapshot.config.wireguard.key_rotation_interval, now)
        if identity.public_key is None:
            return None  # no WireGuard on this node: nothing to rotate
        if self.own is None and self._wanted(now) and r.can_start(snapshot, self.name):
            await self._start(now)
        if self.own is not None:
            ready = await self._helpers_ready(self.own, snapshot)
            own, step = r.advance(self.own, snapshot, self.name, now=now, timeout=self.timeout, ready=ready)
            switched = await self._step(step, identity)  # if it fails, the next pass takes the step again
            self.own = own
        await self._plan_helper(snapshot, local, now)
        return switched

    async def _helpers_ready(self, own: r.OwnRotation, snapshot: Snapshot) -> frozenset[str]:
        """While we prepare: the acked peers whose helper tunnel is in session (read from the helper)."""
        if own.phase is not Phase.PREPARE:
            return frozenset()
        try:
            handshakes = await self.helper.handshakes()
        except TransientError as exc:  # none ready: the rotation's timeout still runs
            log.warning("key rotation: reading the helper link failed: %s", exc)
            return frozenset()
        return r.helpers_ready(own, snapshot, self.name, handshakes)

    async def _main_ready(self, node: Node) -> bool:
        """Hosting `node` past its switch: our main device's entry for its new key had a handshake."""
        rot = node.rotation
        if rot is None or rot.phase is not Phase.SWITCH or self.name not in rot.nodes:
            return False
        seen = (node.name, node.public_key)
        if seen not in self._main_seen:  # a device read per pass only until the session is there
            reading = await self.observe_main()
            peers = reading.peers if reading is not None else ()
            if any(p.public_key == node.public_key and p.last_handshake for p in peers):
                self._main_seen = {x for x in self._main_seen if x[0] != node.name} | {seen}
        return seen in self._main_seen

    def after_plan(self, desired: DesiredState) -> DesiredState:
        desired = r.nudge(desired, self.plan.nudge)
        return r.divert_routes(desired, self.plan.divert, main=self.main, helper=self.helper.name)

    def annotations(self, local: LocalNode) -> dict[str, str | None]:
        port = helper_port(local.node.endpoint.port if local.node.endpoint else 51820)
        own = self.own.record(self.helper.helper(port)).encode() if self.own is not None else None
        ack = self.plan.ack.encode() if self.plan.ack is not None else None
        return {ROTATION: own, ROTATION_ACK: ack}

    # --- `meshd keys rotate` --------------------------------------------------------------------------

    async def request(self, timeout: float) -> str:  # noqa: ASYNC109 (the HTTP handler's bound)
        """Rotate now; returns the new public key once the rotation is done. TimeoutError otherwise."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._requests.append(fut)
        self._rearm()
        self.trigger()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._requests.remove(fut)

    async def run(self, stop: asyncio.Event, period: float = 0.5, busy: float = 0.1) -> None:
        """Asks for passes while a rotation runs or is hosted (every `busy` seconds: a step may wait for a
        handshake, which no event announces), while helper peers are kept or a due rotation waits to start
        (every `period` seconds), when the idle helper link's grace ends and when the scheduled rotation is
        due. In between it sleeps: a pass that makes something due sooner wakes it (`_rearm`)."""
        self._period, self._busy = period, busy
        while not stop.is_set():
            if await self._alarm.sleep(self._next_pass(self.clock()), stop) and self._needs_pass():
                self.trigger()

    def _next_pass(self, now: float) -> float | None:
        """When the next pass is needed (None: not until something changes)."""
        if self.own is not None or self.plan.ack is not None:
            return now + self._busy
        if self.plan.peers or self._wanted(now):
            return now + self._period
        times = [self._helper_used + self.grace] if self._helper_up else []
        at = min([*times, *([self._due] if self._due is not None else [])], default=None)
        return at if at is None or at > now else now + self._period  # overdue: until a pass sees to it

    def _needs_pass(self) -> bool:
        active = self.own is not None or self.plan.ack is not None or bool(self.plan.peers)
        return active or self._helper_up or self._wanted(self.clock())

    def _rearm(self) -> None:
        """What is due may have changed (a pass, a request): wake the sleeping `run` if it is due sooner."""
        self._alarm.sooner(self._next_pass(self.clock()))

    # --- internals ------------------------------------------------------------------------------------

    def _schedule(self, interval: float, now: float) -> None:
        if interval == self._interval and (self._due is not None or not interval):
            return
        self._interval = interval
        if not interval:
            self._due = None
            return
        try:
            born = os.stat(self.key_file).st_mtime
        except OSError:
            born = now
        self._due = born + interval - random.uniform(0, min(JITTER * interval, 3600.0))
        log.info(
            "next key rotation in %.0f s (keyRotationInterval %.0f s)", max(0.0, self._due - now), interval
        )

    def _stale(self, snapshot: Snapshot, now: float) -> frozenset[str]:
        """Peers whose rotation record has not changed for `stale_after` seconds: their agent stopped in
        the middle of a rotation. They block no other rotation and nobody keeps hosting them."""
        seen: dict[str, tuple[RotationRecord, float]] = {}
        for n in snapshot.nodes:
            if isinstance(n, Node) and n.rotation is not None and n.name != self.name:
                old = self._records.get(n.name)
                seen[n.name] = old if old is not None and old[0] == n.rotation else (n.rotation, now)
        self._records = seen
        stale = frozenset(name for name, (_, since) in seen.items() if now - since >= self.stale_after)
        for name in stale - self._reported:
            log.warning(
                "ignoring the key rotation of %s: unchanged for %.0f s (its agent stopped?)",
                name,
                now - seen[name][1],
            )
        self._reported = stale
        return stale

    def _wanted(self, now: float) -> bool:
        return bool(self._requests) or (self._due is not None and now >= self._due)

    async def _start(self, now: float) -> None:
        await asyncio.to_thread(prepare_next, self.key_file)
        self.helper.renew()  # a fresh helper key: no entry anywhere holds a session of it (no stale one)
        self.own = r.OwnRotation(id=secrets.token_hex(4), since=now)
        log.info("key rotation %s: preparing (helper link %s)", self.own.id, self.helper.name)

    async def _step(self, step: r.Step, identity: Identity) -> Identity | None:
        if step is r.Step.WAIT:
            return None
        log.info("key rotation: %s", step.value)
        if step is r.Step.ABORT:
            await asyncio.to_thread(discard_next, self.key_file)
            log.info("key rotation backed off: another node rotates first")
        elif step is r.Step.SWITCH:
            await asyncio.to_thread(commit_next, self.key_file)
            new = await asyncio.to_thread(load, self.key_file)
            if self.on_switch is not None:
                await self.on_switch()
            self.rekey(new)
            return replace(identity, public_key=new.public_key(), key_proof=new.proof(self.name))
        elif step is r.Step.DONE:
            self._finished(identity)
        return None

    def _finished(self, identity: Identity) -> None:
        key = identity.public_key.base64 if identity.public_key is not None else ""
        log.info("rotated key: node %s now uses %s...", self.name, key[:8])
        self._count.inc()
        self.on_rotated(key)
        self._due = (
            None if not self._interval else self.clock() + self._interval * (1 - random.uniform(0, JITTER))
        )
        for fut in self._requests:
            if not fut.done():
                fut.set_result(key)
        self._requests.clear()

    async def _plan_helper(self, snapshot: Snapshot, local: LocalNode, now: float) -> None:
        wg = snapshot.config.wireguard
        port = helper_port(local.node.endpoint.port if local.node.endpoint else wg.listen_port)
        mine = self.helper.helper(port)
        host = r.hosted(snapshot, self.name, self._hosting(snapshot), self.own)
        if self.own is not None:
            plan = r.plan_own(self.own, snapshot, self.name)
        elif host is not None:
            plan = r.plan_host(host, self.name, mine, main_ready=await self._main_ready(host))
        else:
            plan = r.HelperPlan()
        self._port, self._mtu = port, wg.mtu or local.underlay_mtu - OVERHEAD
        if plan.peers or self.own is not None:
            await self.helper.ensure(port=port, mtu=self._mtu, peers=plan.peers)
            self._helper_used, self._helper_up = now, True
        self.plan = plan

    def _hosting(self, snapshot: Snapshot) -> RotationAck | None:
        """The rotation we host: after a restart, the one our record still acks (we keep hosting it)."""
        if self._resumed:
            return self.plan.ack
        self._resumed = True
        own = next((n for n in snapshot.nodes if isinstance(n, Node) and n.name == self.name), None)
        return own.rotation_ack if own is not None else None

    async def after_apply(self) -> None:
        """Delete the helper link once no rotation has needed it for `grace` seconds. Called after the
        pass applied its routes, so no route of ours points at the link when it goes."""
        needed = self.plan.peers or self.own is not None
        if needed:
            peers = self._recent.keep(self.plan.peers, self.clock(), self.grace)
            await self.helper.ensure(port=self._port, mtu=self._mtu, peers=peers, prune=True)
        elif self._helper_up and self.clock() - self._helper_used >= self.grace:
            await self.helper.remove()
            self._helper_up = False
        self._rearm()
