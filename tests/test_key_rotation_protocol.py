"""The key-rotation protocol (meshd.core.rotation), pure: its steps, its records, and a simulation of whole
rotations in which, after every single pass of any node, every pair can still reach each other both ways."""

from __future__ import annotations

import random

import pytest

from keys.values import PrivateKey
from meshd.core import rotation as r
from meshd.core.rotation_record import Helper, Phase, RotationAck, RotationRecord, decode_ack, decode_rotation
from tests.rotation_sim import Sim

KEY = PrivateKey.generate().public_key()


def test_records_round_trip() -> None:
    rec = RotationRecord("0123abcd", Phase.DIVERT, Helper(KEY, 51821), frozenset({"a", "node-2.example"}))
    assert decode_rotation(rec.encode()) == rec
    ack = RotationAck("node-1", "0123abcd", Phase.SWITCH, Helper(KEY, 1))
    assert decode_ack(ack.encode()) == ack


@pytest.mark.parametrize(
    "text",
    ["", "v2:0123abcd:prepare:x:1:", "v1:0123abcd:later:" + KEY.base64 + ":1:", "v1:xyz:prepare:" + KEY.base64 + ":1:",
     "v1:0123abcd:prepare:" + KEY.base64 + ":0:", "v1:0123abcd:prepare:" + KEY.base64 + ":1:Bad_Name", None, 5],
)  # fmt: skip
def test_garbage_records_are_no_rotation(text: object) -> None:
    assert decode_rotation(text) is None
    assert decode_ack(text) is None


def run(sim: Sim, order: list[str], rounds: int, *, dt: float = 0.3) -> None:
    for _ in range(rounds):
        for name in order:
            sim.step(name)
        sim.now += dt


def test_one_rotation_changes_the_key_and_never_breaks_a_pair() -> None:
    sim = Sim.of(3)
    before = sim.nodes["n1"].key
    sim.nodes["n1"].wanted = True
    run(sim, ["n0", "n1", "n2"], 12)
    n1 = sim.nodes["n1"]
    assert n1.rotations == 1 and n1.key != before and n1.own is None
    assert all(n.plan == r.HelperPlan() for n in sim.nodes.values()), "helpers still in use"
    assert all(n.main_peers["n1"] == n1.key for n in sim.nodes.values() if n is not n1)


def test_simultaneous_starts_serialize_by_name() -> None:
    sim = Sim.of(3)
    for n in sim.nodes.values():
        n.wanted = True
    run(sim, ["n2", "n1", "n0"], 60)
    assert [n.rotations for n in sim.nodes.values()] == [1, 1, 1]


def test_silent_peer_is_left_out_after_the_timeout_and_catches_up() -> None:
    sim = Sim.of(3)
    sim.nodes["n2"].online = False
    sim.nodes["n0"].wanted = True
    run(sim, ["n0", "n1"], 120)  # 36 s: three phases of at most 10 s
    assert sim.nodes["n0"].rotations == 1
    sim.nodes["n2"].online = True
    sim.checking = False  # its pair with n0 is interrupted until it puts n0's new key on its device
    sim.step("n2")
    sim.step("n0")
    sim.traffic()  # and handshakes again with it
    sim.checking = True
    sim.check()
    assert sim.nodes["n2"].main_peers["n0"] == sim.nodes["n0"].key


def test_prepare_waits_for_a_peer_hosting_another_rotation() -> None:
    sim = Sim.of(3)
    sim.nodes["n0"].wanted = True
    sim.step("n0")  # n0 prepares
    sim.step("n1")  # n1 hosts n0
    sim.nodes["n2"].own = r.OwnRotation("0000beef", since=sim.now)  # n2 starts too, unaware
    sim.nodes["n2"].published = sim.nodes["n2"].record()
    sim.now += 100
    sim.step("n2")  # must back off: n0's name is smaller
    assert sim.nodes["n2"].own is None


@pytest.mark.parametrize("seed", range(40))
def test_random_schedules_keep_every_pair_up(seed: int) -> None:
    """Any interleaving of passes (no peer silent past the timeout), rotations wanted at random moments:
    every pair stays reachable after every pass (the simulation asserts it), every rotation completes."""
    rng = random.Random(seed)
    sim = Sim.of(rng.randint(2, 4))
    sim.timeout = 1e9
    names, wants = list(sim.nodes), rng.randint(1, 4)
    for _ in range(400):
        if wants and rng.random() < 0.05:
            node = sim.nodes[rng.choice(names)]
            if not node.wanted:
                node.wanted, wants = True, wants - 1
        sim.step(rng.choice(names))
        sim.now += rng.choice((0.0, 0.1, 0.5))
    run(sim, names, 80)
    assert all(not x.wanted for x in sim.nodes.values()), "a wanted rotation never happened"


@pytest.mark.parametrize("seed", range(40))
def test_random_orders_with_the_real_timeout(seed: int) -> None:
    """Every node passes about every 0.3 s in a random order, with the agent's timeout: nothing is lost."""
    rng = random.Random(seed)
    sim = Sim.of(rng.randint(2, 4))
    names = list(sim.nodes)
    for i in range(300):
        if i % 40 == 0:
            sim.nodes[rng.choice(names)].wanted = True
        rng.shuffle(names)
        for name in names:
            sim.step(name)
        sim.now += 0.3
    assert sum(n.rotations for n in sim.nodes.values()) >= 5


def test_a_rotation_whose_agent_is_gone_blocks_nobody_once_stale() -> None:
    sim = Sim.of(3)
    sim.nodes["n0"].wanted = True
    while sim.nodes["n0"].own is None or sim.nodes["n0"].own.phase is not Phase.DIVERT:
        run(sim, ["n0", "n1", "n2"], 1)
    run(sim, ["n1", "n2"], 1)  # the peers divert too
    sim.nodes["n0"].online = False  # its agent dies; its record stays
    sim.nodes["n1"].wanted = True
    run(sim, ["n1", "n2"], 10)
    assert sim.nodes["n1"].rotations == 0, "started while another rotation was visible"
    sim.stale = frozenset({"n0"})  # unchanged for stale_after seconds: ignored by everyone
    run(sim, ["n1", "n2"], 60)  # n0 is silent: n1 waits out the timeout once, then leaves it out
    assert sim.nodes["n1"].rotations == 1
    assert sim.nodes["n2"].plan.hosted is None
