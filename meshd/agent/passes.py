"""One reconcile pass: snapshot -> local node -> observe -> plan -> diff -> apply -> publish.
Level-triggered: everything is recomputed from the whole snapshot each time. It wires; the planner and
diff decide, the dataplane acts, the report says how it went."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar

from meshd.agent.kernel_view import KernelView, Read
from meshd.agent.report import Report
from meshd.agent.view import MeshView
from meshd.core.actions import Action
from meshd.core.incremental import Planned, replan
from meshd.core.local import Identity, annotations_to_publish, local_node
from meshd.core.model import EncryptionMode, LocalNode, Snapshot
from meshd.core.moves import Moves
from meshd.core.netset import PeerNetworks
from meshd.core.ports import Applied, Dataplane, Datastore
from meshd.core.rediff import Diffed, rediff
from meshd.core.state import ActualState, DesiredState, DeviceNames

log = logging.getLogger(__name__)
T = TypeVar("T")
AfterPass = Callable[[LocalNode, DesiredState], Awaitable[None]]
"""Runs after a pass applied its changes, e.g. writes the CNI config (`after_pass`: before the publish;
`after_publish`: once peers were told, for what no one waits on)."""


class RotationHook(Protocol):
    """Key rotation (meshd.agent.rotation): steps its protocol, diverts routes, adds its annotations."""

    async def before_plan(self, snapshot: Snapshot, local: LocalNode, identity: Identity) -> Identity | None:
        """Our new identity when the key was switched in this pass, else None."""

    def after_plan(self, desired: DesiredState) -> DesiredState: ...

    async def after_apply(self) -> None: ...

    def annotations(self, local: LocalNode) -> dict[str, str | None]: ...


class PassError(Exception):
    """A pass failed; `phase` says where, `__cause__` is what failed."""

    def __init__(self, phase: str, cause: BaseException) -> None:
        super().__init__(f"{phase}: {cause}")
        self.phase = phase
        self.cause = cause


class PassDatastore(Datastore, Protocol):
    @property
    def config_error(self) -> str | None:
        """Why the latest MeshConfig was rejected (the previous one stays in force), or None."""

    @property
    def meshconfig_generation(self) -> int | None:
        """The latest MeshConfig's `metadata.generation`, accepted or rejected (0: it has none or cannot be
        read; None: there is no MeshConfig)."""


@dataclass
class PlanMemo:
    """The last plan and diff, reused while their inputs are unchanged: a pass that finds the datastore and
    the kernel as the last pass left them plans and diffs nothing, and a pass after a change decides again
    only the pairs it touches (meshd.core.incremental). Both stay pure functions of their inputs, and of
    `moves` (the agent's: what changed between versions of a table, meshd.core.moves)."""

    moves: Moves
    _plan: tuple[tuple[object, ...], Planned] | None = None
    _diff: Diffed | None = None

    def plan(self, snapshot: Snapshot, local: LocalNode, names: DeviceNames) -> DesiredState:
        key = (snapshot.nodes, snapshot.config, local, names)
        last = self._plan
        if last is None or last[0] != key:
            self._plan = last = (key, replan(last and last[1], snapshot, local, self.moves, names=names))
        return last[1].state

    def diff(self, desired: DesiredState, actual: ActualState) -> tuple[tuple[Action, ...], ActualState]:
        """The actions, and the view they were diffed against: the last one when `actual` equals it (a
        resync's fresh read is a new object; comparing costs a fraction of diffing), so that what follows
        (the report) sees one object while the kernel holds still. A change diffs again only the keys
        it touches and those the last diff acted on (meshd.core.rediff)."""
        last = self._diff
        if (
            last is None
            or last.desired is not desired
            or (last.actual is not actual and last.actual != actual)
        ):
            self._diff = last = rediff(last, desired, actual, self.moves)
        return last.actions, last.actual


@dataclass
class ReconcilePass:
    datastore: PassDatastore
    dataplane: Dataplane
    identity: Identity
    kernel: KernelView
    report: Report
    view: MeshView
    memo: PlanMemo  # holds the agent's Moves
    after_pass: AfterPass | None = None
    after_publish: AfterPass | None = None
    rotation: RotationHook | None = None
    applied_generation: int | None = None
    """The MeshConfig generation the last complete pass applied (published as observedGeneration)."""
    _watched: PeerNetworks = field(init=False)  # peers' pod CIDRs: foreign routes in them are reported

    def __post_init__(self) -> None:
        self._watched = PeerNetworks(self.identity.name, self.memo.moves)

    async def __call__(self, read: Read = Read.FULL) -> bool:
        """One pass. Returns True when it changed the kernel. Raises PassError naming the failed phase.
        `read` below FULL may start from the kernel view of the previous pass (KernelView)."""
        self.view.passing = True
        try:
            return await self._run(read)
        except PassError:
            raise
        except Exception as exc:  # a bug must not end the loop: count it, back off, try again
            log.exception("reconcile pass failed unexpectedly")
            raise PassError("internal", exc) from exc
        finally:
            self.view.pass_ended()

    async def _run(self, read: Read) -> bool:
        started = time.perf_counter()
        self.report.started()
        snapshot, store = self.datastore.snapshot(), self.datastore
        self.view.config = snapshot.config
        if not self.report.datastore(
            synced=snapshot.synced, failure=store.failure, config_error=store.config_error
        ):
            return False
        if snapshot.nodes is not self._watched.records:  # the datastore shares unchanged records
            self._watched.follow(snapshot.nodes)
            self.dataplane.watch_networks(self._watched.networks)
        actual = await _phase("observe", self.kernel.actual(read))
        local = await self._local(snapshot, actual)
        if local is None:
            self.report.waiting_for_own_record()
            return False
        if self.rotation is not None:
            local = await self._rotate(self.rotation, snapshot, local, actual)
        try:
            desired = self.memo.plan(snapshot, local, self.dataplane.names)
            if self.rotation is not None:
                desired = self.rotation.after_plan(desired)
            actions, actual = self.memo.diff(desired, actual)
        except Exception as exc:
            raise PassError("plan", exc) from exc
        encryption = snapshot.config.mode != EncryptionMode.DISABLED
        self.kernel.applying(actions)
        report = partial(self.report.planned, snapshot.nodes, desired, actual, encryption=encryption)
        try:  # the kernel first: a node's first plan reports thousands of peers
            applied = await _phase("apply", self.dataplane.apply(actions)) if actions else Applied()
        except BaseException:
            with contextlib.suppress(Exception):  # the apply's error is the one to tell
                report()
            raise
        report()
        self.report.applied(actions)
        local = _with_learned_mac(local, applied)
        self.view.found = actual
        await self._finish(snapshot, local, desired)
        self.view.last, self.view.applied = (desired, actual), snapshot
        self.kernel.settle(actual, local.underlay_mtu, actions)
        self.report.passed(failure=store.failure, seconds=time.perf_counter() - started)
        return bool(actions)

    async def _local(self, snapshot: Snapshot, actual: ActualState) -> LocalNode | None:
        vxlan_mac = actual.vxlan.mac if actual.vxlan else None
        local = local_node(
            self.identity,
            snapshot,
            vxlan_mac=vxlan_mac,
            underlay_mtu=0,  # measured next, once we know our underlay address
            observed_generation=self.applied_generation,
        )
        if local is None:
            return None
        return replace(local, underlay_mtu=await _phase("observe", self.kernel.mtu(local.node.underlay_ip)))

    async def _rotate(
        self, rotation: RotationHook, snapshot: Snapshot, local: LocalNode, actual: ActualState
    ) -> LocalNode:
        """Step the key rotation; after a key switch, our identity (key and proof) is the new one."""
        identity = await _phase("rotation", rotation.before_plan(snapshot, local, self.identity))
        if identity is None:
            return local
        self.identity = self.view.identity = identity
        return await self._local(snapshot, actual) or local

    async def _finish(self, snapshot: Snapshot, local: LocalNode, desired: DesiredState) -> None:
        if self.after_pass is not None:
            await _phase("after-pass", self.after_pass(local, desired))
        if self.rotation is not None:
            await _phase("rotation", self.rotation.after_apply())
        self.applied_generation = snapshot.config.generation
        annotations = annotations_to_publish(self.identity, local, self.applied_generation)
        if self.rotation is not None:
            annotations.update(self.rotation.annotations(local))
        await _phase("publish", self.datastore.publish(self.identity.name, annotations))
        if self.after_publish is not None:
            await _phase("after-pass", self.after_publish(local, desired))


def _with_learned_mac(local: LocalNode, applied: Applied) -> LocalNode:
    """Our node with the MAC of the VXLAN device this pass created: the kernel picks it at creation, so the
    pass that creates the device publishes it together with the key, endpoint and capabilities (one patch;
    peers need it for their FDB and neighbour entries), not a pass later."""
    if applied.vxlan_mac is None or applied.vxlan_mac == local.node.vxlan_mac:
        return local
    return replace(local, node=replace(local.node, vxlan_mac=applied.vxlan_mac))


async def _phase(phase: str, aw: Awaitable[T]) -> T:
    try:
        return await aw
    except Exception as exc:  # the loop must survive any one failure; the phase says where it happened
        raise PassError(phase, exc) from exc
