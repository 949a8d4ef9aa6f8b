"""The PSK pair plan from the last one equals the whole plan, and the PSK manager that follows it does
exactly what one that plans every update whole does: after any history of nodes coming, going and
changing (keys, `pq`, pod CIDR families, WireGuard or not), MeshConfig PSK settings and our own node
changing, with exchanges installing PSKs in between, both make the same device writes and hold the same
pairs. The plans come from the real planner, with unchanged records shared as a datastore shares them."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import replace

from keys.values import PublicKey
from meshd.core.incremental import Planned, replan
from meshd.core.model import (
    Endpoint,
    InvalidNode,
    LocalNode,
    MeshConfig,
    Node,
    NodeRecord,
    Snapshot,
    Transport,
    WireGuardSettings,
)
from meshd.core.moves import Moves
from meshd.core.state import DesiredState, ObservedPeer, WireGuardReading
from meshd.pq.follow import PqPlanned, replan_pairs
from meshd.pq.manager import PskManager
from meshd.pq.pairs import plan_pairs

KEYS = [PublicKey(bytes([i]) * 32) for i in range(1, 12)]


def _node(rng: random.Random, i: int) -> Node:
    underlay = ipaddress.ip_address(f"198.18.0.{i + 1}")
    families = rng.choice([(4,), (4,), (6,), (4, 6)])
    cidrs = tuple(
        ipaddress.ip_network(f"198.19.{i}.0/24" if v == 4 else f"2001:db8:{i}::/64") for v in families
    )
    wg = rng.random() < 0.85
    return Node(
        f"n{i}",
        underlay,
        cidrs,
        public_key=rng.choice(KEYS) if wg else None,
        endpoint=Endpoint(underlay, 51820),
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN} if wg else {Transport.VXLAN}),
        vxlan_mac=f"02:00:00:00:00:{i:02x}",
        post_quantum=rng.random() < 0.8,
    )


class Device:
    name = "no-such-link"  # no index: the manager listens nowhere

    def __init__(self, held: Sequence[PublicKey]) -> None:
        self.writes: list[list[tuple[PublicKey, bool]]] = []
        self.held = held

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        self.writes.append([(k, psk is not None) for k, psk in changes])

    async def observe_device(self) -> WireGuardReading:
        peers = tuple(ObservedPeer(k, None, frozenset(), has_psk=True) for k in self.held)
        return WireGuardReading(None, 51820, peers)


def _history(rng: random.Random, moves: Moves) -> list[tuple[Snapshot, LocalNode, DesiredState]]:
    """Snapshots sharing unchanged records, our node, and the real planner's plan of each (told to `moves`)."""
    records: dict[str, NodeRecord] = {f"n{i}": _node(rng, i) for i in range(rng.randrange(2, 9))}
    config = MeshConfig(wireguard=WireGuardSettings(post_quantum=True))
    planned: Planned | None = None
    out = []
    for _ in range(12):
        step, i = rng.random(), rng.randrange(1, 10)
        if step < 0.05:
            config = MeshConfig(wireguard=WireGuardSettings(post_quantum=rng.random() < 0.7))
        elif step < 0.1:
            records["n0"] = _node(rng, 0)
        elif step < 0.3:
            records.pop(f"n{i}", None)
        elif step < 0.35:
            records[f"n{i}"] = InvalidNode(f"n{i}", "bad", "bad")
        elif step < 0.9:
            records[f"n{i}"] = _node(rng, i)
        me = records.setdefault("n0", _node(rng, 0))
        assert isinstance(me, Node)
        local = LocalNode(me, wireguard_available=Transport.WIREGUARD in me.capabilities)
        snapshot = Snapshot.of(tuple(records.values()), config)
        planned = replan(planned, snapshot, local, moves)
        out.append((snapshot, local, planned.state))
    return out


def test_the_plan_from_the_last_one_equals_the_whole_plan_after_any_history() -> None:
    moves = Moves()
    for seed in range(150):
        last: PqPlanned | None = None
        for snapshot, local, desired in _history(random.Random(seed), moves):
            last = replan_pairs(last, snapshot, local, desired, moves)
            assert last.plan == plan_pairs(snapshot, local, desired), f"seed {seed}"
            assert set(last.addrs) == {p.local_addr for p in last.plan.pairs}


async def _run(seed: int, *, whole: bool) -> tuple[list[list[tuple[PublicKey, bool]]], list[object]]:
    rng = random.Random(seed)
    device = Device(rng.sample(KEYS, 3))
    moves = Moves()  # the agent's: the planner tells it, the manager follows with it
    manager = PskManager(node="n0", device=device, clock=lambda: 0.0, moves=moves)
    seen: list[object] = []
    for snapshot, local, desired in _history(rng, moves):
        if whole:
            manager._taken = None  # as if the last update had not gone through: planned whole
        await manager.update(snapshot, local, desired)
        for name in sorted(manager.states):  # (the order of states is no behaviour)
            if rng.random() < 0.3:  # an exchange installs a PSK
                await manager._install(manager.states[name].pair, b"\x01" * 32)
        if rng.random() < 0.05:
            await manager.own_key_changing()
        seen.append(sorted((n, st.pair, st.epoch, st.next_try) for n, st in manager.states.items()))
        seen.append((manager.plan, sorted(manager._with_psk), sorted(manager._seen)))
    return device.writes, seen


def test_the_manager_following_its_plan_does_what_one_planning_whole_does() -> None:
    for seed in range(150):
        assert asyncio.run(_run(seed, whole=False)) == asyncio.run(_run(seed, whole=True)), f"seed {seed}"


def test_a_change_to_one_node_decides_only_its_pair_again() -> None:
    moves = Moves()
    rng = random.Random(1)
    nodes = [
        replace(_node(rng, i), post_quantum=True, public_key=PublicKey(bytes([i + 1]) * 32))
        for i in range(20)
    ]
    config = MeshConfig(wireguard=WireGuardSettings(post_quantum=True))
    local = LocalNode(nodes[0], wireguard_available=True)
    first = replan(None, Snapshot.of(nodes, config), local, moves)
    planned = replan_pairs(None, Snapshot.of(nodes, config), local, first.state, moves)
    grown = [*nodes, replace(_node(rng, 20), public_key=PublicKey(bytes([21]) * 32))]
    again = replan(first, Snapshot.of(grown, config), local, moves)
    after = replan_pairs(planned, Snapshot.of(grown, config), local, again.state, moves)
    assert after.touched == frozenset({"n20"})
    assert after.plan == plan_pairs(Snapshot.of(grown, config), local, again.state)
