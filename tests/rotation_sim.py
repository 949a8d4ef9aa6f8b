"""A pure simulation of the key-rotation protocol (meshd.core.rotation) between N nodes: each pass of a node
reads the others' published records, steps its rotation like meshd.agent.rotation does, updates its main
device's peers and its routes, and publishes. Used by the protocol's unit and property tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from keys.values import PrivateKey, PublicKey
from meshd.core import rotation as r
from meshd.core.model import Endpoint, Node, Snapshot, Transport
from meshd.core.rotation_record import Helper


@dataclass
class SimNode:
    name: str
    index: int
    key: PublicKey = field(default_factory=lambda: PrivateKey.generate().public_key())
    helper: Helper = field(default_factory=lambda: Helper(PrivateKey.generate().public_key(), 51821))
    own: r.OwnRotation | None = None
    plan: r.HelperPlan = field(default_factory=r.HelperPlan)
    wanted: bool = False
    online: bool = True
    rotations: int = 0
    main_peers: dict[str, PublicKey] = field(default_factory=dict)  # peer -> its key on our main device
    helper_peers: dict[str, PublicKey] = field(default_factory=dict)  # peer -> its helper key on our helper
    via_helper: set[str] = field(default_factory=set)  # peers whose pod CIDRs we route via the helper
    published: Node | None = None

    def record(self) -> Node:
        underlay = ipaddress.IPv4Address(f"198.18.0.{self.index + 1}")
        return Node(
            name=self.name,
            underlay_ip=underlay,
            pod_cidrs=(ipaddress.IPv4Network(f"198.19.{self.index + 1}.0/24"),),
            public_key=self.key,
            endpoint=Endpoint(underlay, 51820),
            capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
            rotation=self.own.record(self.helper) if self.own is not None else None,
            rotation_ack=self.plan.ack,
        )


@dataclass
class Sim:
    nodes: dict[str, SimNode]
    timeout: float = 10.0
    now: float = 0.0
    counter: int = 0
    stale: frozenset[str] = frozenset()  # rotation records every node ignores (their agent is gone)

    @classmethod
    def of(cls, n: int) -> Sim:
        sim = cls({f"n{i}": SimNode(f"n{i}", i) for i in range(n)})
        for node in sim.nodes.values():
            node.published = node.record()
        for node in sim.nodes.values():
            node.main_peers = {o.name: o.key for o in sim.nodes.values() if o is not node}
        return sim

    def snapshot(self) -> Snapshot:
        return Snapshot.of(n.published for n in self.nodes.values() if n.published is not None)

    def step(self, name: str) -> None:
        """One pass of node `name` (as meshd.agent.rotation + the planner would do it)."""
        node, snap = self.nodes[name], r.ignoring(self.snapshot(), self.stale - {name})
        if not node.online:
            return
        if node.own is None and node.wanted and r.can_start(snap, name):
            self.counter += 1
            node.own = r.OwnRotation(id=f"{self.counter:08x}", since=self.now)
        if node.own is not None:
            node.own, step = r.advance(node.own, snap, name, now=self.now, timeout=self.timeout)
            if step is r.Step.SWITCH:
                node.key = PrivateKey.generate().public_key()
            elif step is r.Step.DONE:
                node.rotations += 1
                node.wanted = False
            elif step is r.Step.ABORT:
                pass
        host = r.hosted(snap, name, node.plan.ack, node.own)
        if node.own is not None:
            node.plan = r.plan_own(node.own, snap, name)
        elif host is not None:
            node.plan = r.plan_host(host, name, node.helper)
        else:
            node.plan = r.HelperPlan()
        self._apply(node, snap)
        node.published = node.record()

    def _apply(self, node: SimNode, snap: Snapshot) -> None:
        peers = r.wireguard_peers(snap, node.name)
        # make before break: peers first (adds), then routes, then helper peers no longer wanted
        node.main_peers = {n: p.public_key for n, p in peers.items() if p.public_key is not None}
        wanted = {spec.node: spec.public_key for spec in node.plan.peers}
        node.helper_peers.update(wanted)
        self.check()
        node.via_helper = {n for n, p in peers.items() if set(p.pod_cidrs) & node.plan.divert}
        self.check()
        node.helper_peers = wanted
        self.check()

    def path_broken(self, a: SimNode, b: SimNode) -> str | None:
        """Why a packet a -> b (a's route to b's pods) would be lost now, or None."""
        if b.name in a.via_helper:
            if a.helper_peers.get(b.name) != b.helper.public_key:
                return f"{a.name}'s helper lacks {b.name}'s helper"
            if b.helper_peers.get(a.name) != a.helper.public_key:
                return f"{b.name}'s helper lacks {a.name}'s helper"
            return None
        if a.main_peers.get(b.name) != b.key:
            return f"{a.name}'s main device has a stale key of {b.name}"
        if b.main_peers.get(a.name) != a.key:
            return f"{b.name}'s main device has a stale key of {a.name}"
        return None

    def check(self) -> None:
        """Every pair of online nodes can reach each other both ways, at this very moment."""
        live = [n for n in self.nodes.values() if n.online]
        for a in live:
            for b in live:
                if a is not b:
                    problem = self.path_broken(a, b)
                    assert problem is None, f"t={self.now}: {a.name} -> {b.name} lost: {problem}"
