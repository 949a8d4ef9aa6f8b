"""The real per-node product path with no datastore, for netns tests.

Each lab node gets a `meshd.agent.dataplane.Dataplane` over the real adapters (wireguard-go or kernel
WireGuard, NetlinkLinks, NetlinkRouteTable) acting in its namespace. The test owns the cluster's records (what each node has
published) and the MeshConfig, and runs for one node what one reconciler pass does: snapshot →
observe → `local_node` → `plan` → `diff` → `Dataplane.apply`, then records what the node publishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, genlmsg
from pyroute2.netlink.nlsocket import NetlinkRequest

from keys.values import PrivateKey, PublicKey
from meshd.agent.dataplane import Dataplane, describe
from meshd.core.actions import Action, CreateVxlanDevice
from meshd.core.diff import diff
from meshd.core.local import Identity, local_node, published
from meshd.core.model import Labels, MeshConfig, Node, Snapshot
from meshd.core.planner import plan
from meshd.core.ports import WireGuardDevice
from meshd.core.state import ActualState, DesiredState, DeviceNames, ObservedPeer
from meshd.demo.netlab import Lab, LabNode, lab_cluster
from meshd.rtnl import Message, RawRtnl, Request
from meshd.rtnl_msgs import HEADER
from overlay.kernel import KernelWireGuard
from overlay.routes import NetlinkRouteTable
from overlay.userspace import UapiClient, WireGuardGo
from tests.support.kernel import slow
from tests.support.wg import peers_of
from vxlan.links import NetlinkLinks

VX = "meshd-vxlan"
UNDERLAY_MTU = 1500
BACKENDS = ("userspace", "kernel")  # wireguard-go, kernel WireGuard
WG_CMD_GET_DEVICE = 0  # the wireguard genl family's only read


@dataclass
class Member:
    """One node's agent side: its lab node, private key and dataplane over the real adapters."""

    node: LabNode
    key: PrivateKey
    dataplane: Dataplane
    wg: WireGuardDevice

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key()

    @property
    def identity(self) -> Identity:
        n = self.node
        return Identity(n.name, self.public_key, underlay_ip=n.underlay, pod_cidrs=n.pod_cidrs)


@contextlib.asynccontextmanager
async def member(
    node: LabNode,
    run_dir: Path,
    key: PrivateKey | None = None,
    *,
    from_root: bool = True,
    backend: str = "userspace",
) -> AsyncIterator[Member]:
    """A Member acting in `node`'s namespace from outside it, or (`from_root=False`) from a process
    already running inside it, like a real agent; its WireGuard is wireguard-go or (`backend="kernel"`)
    kernel WireGuard. Closes its sockets on exit; the lab ends wireguard-go with the namespace."""
    ns = node.ns if from_root else None
    key = key or PrivateKey.generate()
    wg: WireGuardDevice
    if backend == "kernel":
        wg = KernelWireGuard(node.wg_name, key, ns)
    else:
        wg = WireGuardGo(node.wg_name, key, ns, run_dir=run_dir, timeout=slow(5))
    try:
        async with NetlinkLinks(netns=ns) as links, NetlinkRouteTable(netns=ns) as routes:
            names = DeviceNames(wireguard=node.wg_name, vxlan=VX)
            yield Member(node, key, Dataplane(names, links, routes, wg), wg)
    finally:
        if isinstance(wg, KernelWireGuard):
            await wg.close()


def registered(node: LabNode, labels: Labels = ()) -> Node:
    """The record a node has before its agent's first pass (file mode: name, underlay, pod CIDRs)."""
    return Node(node.name, node.underlay, node.pod_cidrs, labels=labels)


@dataclass(frozen=True)
class Step:
    desired: DesiredState
    actual: ActualState
    actions: tuple[Action, ...]


@dataclass
class Cluster:
    """The records every node sees (like the datastore) and the passes that converge the members."""

    members: list[Member]
    config: MeshConfig = field(default_factory=MeshConfig)
    records: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in self.members:
            self.records.setdefault(m.name, registered(m.node))

    def snapshot(self) -> Snapshot:
        return Snapshot.of(self.records.values(), self.config)

    def by_name(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def label(self, name: str, labels: Labels) -> None:
        self.records[name] = dataclasses.replace(self.records[name], labels=labels)

    async def step(self, m: Member) -> Step:
        """Observe, plan and diff one node as a reconciler pass does; applies nothing."""
        snapshot = self.snapshot()
        m.dataplane.routes.watch_networks(
            c for n in snapshot.nodes if isinstance(n, Node) and n.name != m.name for c in n.pod_cidrs
        )
        actual = await m.dataplane.observe()
        local = local_node(
            m.identity,
            snapshot,
            vxlan_mac=actual.vxlan.mac if actual.vxlan else None,
            underlay_mtu=UNDERLAY_MTU,
            observed_generation=None,
        )
        assert local is not None
        desired = plan(snapshot, local, names=m.dataplane.names)
        self.records[m.name] = published(local, None)
        return Step(desired, actual, diff(desired, actual))

    async def run_pass(self, m: Member) -> tuple[Action, ...]:
        """One full pass for `m`: the actions it applied."""
        step = await self.step(m)
        if step.actions:
            applied = await m.dataplane.apply(step.actions)
            if any(isinstance(x, CreateVxlanDevice) for x in step.actions):  # it reports the MAC it made
                vxlan = (await m.dataplane.observe()).vxlan
                assert vxlan is not None and applied.vxlan_mac == vxlan.mac
            else:
                assert applied.vxlan_mac is None
        return step.actions

    async def converge(
        self, members: Sequence[Member] | None = None, rounds: int = 4
    ) -> dict[str, list[Action]]:
        """Passes over `members` (default: all) until a whole round changes nothing; what each applied."""
        applied: dict[str, list[Action]] = {}
        last: list[str] = []
        for _ in range(rounds):
            last = []
            for m in members if members is not None else self.members:
                actions = await self.run_pass(m)
                applied.setdefault(m.name, []).extend(actions)
                last.extend(f"{m.name}: {describe(x)}" for x in actions)
            if not last:
                return applied
        raise AssertionError(
            f"no convergence in {rounds} rounds; the last one still did:\n" + "\n".join(last)
        )


async def peers_by_key(m: Member) -> dict[PublicKey, ObservedPeer]:
    return {p.public_key: p for p in await peers_of(m.wg)}


def pod_pairs(nodes: Sequence[LabNode]) -> list[tuple[LabNode, LabNode]]:
    return [(a, b) for a in nodes for b in nodes if a is not b]


def unreachable(lab: Lab, pairs: Iterable[tuple[LabNode, LabNode]], *, attempts: int = 10) -> list[str]:
    """`src->dst ip` for every pod address that does not answer a ping from the source pod."""
    return [
        f"{a.name}->{b.name} {ip}"
        for a, b in pairs
        for ip in b.pod_ips
        if not lab.wait_ping(a.pod_ns, str(ip), attempts=attempts)
    ]


# --- counting kernel writes ---------------------------------------------------------------------------

RTM_BASE = 16  # rtnetlink message types come in fours from here: NEW, DEL, GET, SET


@dataclass
class Writes:
    """Every netlink request (rtnetlink, and generic netlink to kernel WireGuard) and UAPI `set`
    issued by any adapter in this process while active."""

    netlink: list[tuple[int, int]] = field(default_factory=list)  # rtnetlink (message type, flags)
    genl: list[int] = field(default_factory=list)  # the command of each WireGuard genl request
    uapi: list[str] = field(default_factory=list)  # the operation of each set

    @property
    def netlink_writes(self) -> list[tuple[int, int]]:
        return [(t, f) for t, f in self.netlink if is_write(t)]

    @property
    def genl_writes(self) -> list[int]:
        return [c for c in self.genl if c != WG_CMD_GET_DEVICE]

    @property
    def netlink_reads(self) -> int:
        return len(self.netlink) - len(self.netlink_writes) + len(self.genl) - len(self.genl_writes)

    @property
    def wireguard_writes(self) -> list[str]:
        """UAPI sets and genl SET_DEVICE requests: every write to either WireGuard backend."""
        return self.uapi + [f"genl cmd {c}" for c in self.genl_writes]

    def clear(self) -> None:
        self.netlink.clear()
        self.genl.clear()
        self.uapi.clear()


def is_write(msg_type: int) -> bool:
    """Every rtnetlink request but a GET (get or dump) changes the kernel, whatever its flags."""
    return msg_type >= RTM_BASE and (msg_type - RTM_BASE) % 4 != 2


@contextlib.contextmanager
def counting_writes() -> Iterator[Writes]:
    """Wrap the write seams every adapter goes through: pyroute2's `NetlinkRequest.send` (rtnetlink and
    genl requests, whatever socket or namespace), meshd's own rtnetlink socket (`RawRtnl.batch` and
    `RawRtnl.dump`) and `UapiClient.set` (all wireguard-go sets)."""
    writes = Writes()
    send, uapi_set = NetlinkRequest.send, UapiClient.set
    batch, dump = RawRtnl.batch, RawRtnl.dump

    async def counted_send(self: Any) -> Any:
        if isinstance(self.msg, genlmsg):
            writes.genl.append(int(self.msg["cmd"]))
        else:
            header = self.msg["header"]
            writes.netlink.append((int(header["type"]), int(header["flags"])))
        return await send(self)

    async def counted_set(self: UapiClient, request: str, operation: str) -> None:
        writes.uapi.append(operation)
        await uapi_set(self, request, operation)

    async def counted_batch(self: RawRtnl, requests: Sequence[Request]) -> list[int]:
        writes.netlink.extend(HEADER.unpack_from(r.encode(0))[1:3] for r in requests)  # meshd's own socket
        return await batch(self, requests)

    async def counted_dump(self: RawRtnl, kind: int, family: int) -> list[Message]:
        writes.netlink.append((kind, NLM_F_DUMP))
        return await dump(self, kind, family)

    NetlinkRequest.send = counted_send
    UapiClient.set = counted_set  # type: ignore[method-assign]
    RawRtnl.batch, RawRtnl.dump = counted_batch, counted_dump  # type: ignore[method-assign]
    try:
        yield writes
    finally:
        NetlinkRequest.send = send
        UapiClient.set = uapi_set  # type: ignore[method-assign]
        RawRtnl.batch, RawRtnl.dump = batch, dump  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def lab_mesh(
    run_dir: Path,
    *,
    underlay_v6: bool = False,
    pod_v4: bool = True,
    pod_v6: bool = False,
    config: MeshConfig | None = None,
    backends: Sequence[str] = ("userspace",) * 3,
) -> AsyncIterator[tuple[Lab, Cluster]]:
    """Three lab nodes, each with a Member acting in its namespace over `backends[i]`'s WireGuard;
    nothing configured yet."""
    with lab_cluster(3, underlay_v6=underlay_v6, pod_v4=pod_v4, pod_v6=pod_v6) as (lab, nodes):
        async with contextlib.AsyncExitStack() as stack:
            members = [
                await stack.enter_async_context(member(n, run_dir, backend=b))
                for n, b in zip(nodes, backends, strict=True)
            ]
            yield lab, Cluster(members, config or MeshConfig())
