"""A pure simulation of the key-rotation protocol (meshd.core.rotation) between N nodes: each pass of a node
reads the others' published records, steps its rotation like meshd.agent.rotation does, updates its main
device's peers and its routes, and publishes. Used by the protocol's unit and property tests.

WireGuard sessions are modelled: a tunnel (the two ends' device keys) has a session once one end started a
handshake (an entry with a keepalive, as the protocol asks) while the other end held the matching entry.
A route may only point at a tunnel in session: moving traffic onto a tunnel without one makes both ends
start handshakes that can cross (measured: lost pings), so the simulation counts that as a broken pair."""

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
    helper_keepalive: set[str] = field(default_factory=set)  # helper entries we start handshakes on

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
    sessions: set[frozenset[PublicKey]] = field(default_factory=set)  # tunnels with a handshake
    started: set[frozenset[PublicKey]] = field(default_factory=set)  # handshakes under way
    checking: bool = True  # off while an interrupted pair catches up (a node back from offline)

    @classmethod
    def of(cls, n: int) -> Sim:
        sim = cls({f"n{i}": SimNode(f"n{i}", i) for i in range(n)})
        for node in sim.nodes.values():
            node.published = node.record()
        for node in sim.nodes.values():
            node.main_peers = {o.name: o.key for o in sim.nodes.values() if o is not node}
            sim.sessions |= {frozenset({node.key, o.key}) for o in sim.nodes.values() if o is not node}
        return sim

    def snapshot(self) -> Snapshot:
        return Snapshot.of(n.published for n in self.nodes.values() if n.published is not None)

    def step(self, name: str) -> None:
        """One pass of node `name` (as meshd.agent.rotation + the planner would do it)."""
        node, snap = self.nodes[name], r.ignoring(self.snapshot(), self.stale - {name})
        self.sessions |= self.started  # handshakes complete between two passes, never within one
        self.started.clear()
        if not node.online:
            return
        if node.own is None and node.wanted and r.can_start(snap, name):
            self.counter += 1
            node.own = r.OwnRotation(id=f"{self.counter:08x}", since=self.now)
            node.helper = Helper(PrivateKey.generate().public_key(), node.helper.port)  # a fresh key
        if node.own is not None:
            ready = self._helpers_ready(node, snap)
            node.own, step = r.advance(node.own, snap, name, now=self.now, timeout=self.timeout, ready=ready)
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
            main_ready = (
                host.public_key is not None and frozenset({node.key, host.public_key}) in self.sessions
            )
            node.plan = r.plan_host(host, name, node.helper, main_ready=main_ready)
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
        node.helper_keepalive = {spec.node for spec in node.plan.peers if spec.persistent_keepalive}
        self._handshakes(node)
        self.check()
        node.via_helper = {n for n, p in peers.items() if set(p.pod_cidrs) & node.plan.divert}
        self.check()
        node.helper_peers = wanted
        self.check()

    def _helpers_ready(self, node: SimNode, snap: Snapshot) -> frozenset[str]:
        """What the driver reads from its helper: the last handshake of each helper entry."""
        assert node.own is not None
        theirs = {n: self.nodes[n].helper.public_key for n in node.helper_peers}
        shakes = {
            k: self.now for n, k in theirs.items() if frozenset({node.helper.public_key, k}) in self.sessions
        }
        return r.helpers_ready(node.own, snap, node.name, shakes)

    def _handshakes(self, node: SimNode) -> None:
        """The handshakes `node` starts now (keepalives), answered where the other end has the entry."""
        for name in node.helper_keepalive:
            other = self.nodes[name]
            ours, theirs = node.helper_peers.get(name), other.helper_peers.get(node.name)
            if other.online and (ours, theirs) == (other.helper.public_key, node.helper.public_key):
                self.started.add(frozenset({node.helper.public_key, other.helper.public_key}))
        nudged = next((n for n, k in node.main_peers.items() if k == node.plan.nudge), None)
        if nudged is not None and self.nodes[nudged].main_peers.get(node.name) == node.key:
            self.started.add(frozenset({node.key, self.nodes[nudged].key}))

    def traffic(self) -> None:
        """Traffic on every main tunnel whose ends both hold each other's key: it handshakes (how a pair
        that missed a rotation, its node being offline, comes back)."""
        for a in self.nodes.values():
            for b in self.nodes.values():
                if a is not b and a.main_peers.get(b.name) == b.key and b.main_peers.get(a.name) == a.key:
                    self.sessions.add(frozenset({a.key, b.key}))

    def path_broken(self, a: SimNode, b: SimNode) -> str | None:
        """Why a packet a -> b (a's route to b's pods) would be lost now, or None."""
        if b.name in a.via_helper:
            if a.helper_peers.get(b.name) != b.helper.public_key:
                return f"{a.name}'s helper lacks {b.name}'s helper"
            if b.helper_peers.get(a.name) != a.helper.public_key:
                return f"{b.name}'s helper lacks {a.name}'s helper"
            if frozenset({a.helper.public_key, b.helper.public_key}) not in self.sessions:
                return f"{a.name} routes onto a helper tunnel with {b.name} that has no session"
            return None
        if a.main_peers.get(b.name) != b.key:
            return f"{a.name}'s main device has a stale key of {b.name}"
        if b.main_peers.get(a.name) != a.key:
            return f"{b.name}'s main device has a stale key of {a.name}"
        if frozenset({a.key, b.key}) not in self.sessions:
            return f"{a.name} routes onto a main tunnel with {b.name} that has no session"
        return None

    def check(self) -> None:
        """Every pair of online nodes can reach each other both ways, at this very moment."""
        live = [n for n in self.nodes.values() if n.online and self.checking]
        for a in live:
            for b in live:
                if a is not b:
                    problem = self.path_broken(a, b)
                    assert problem is None, f"t={self.now}: {a.name} -> {b.name} lost: {problem}"
