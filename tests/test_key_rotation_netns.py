"""Key rotation with real agents and wireguard-go in namespaces (file datastore), under 20 Hz pings both
ways on two pairs, with a capture of the underlay: no ping lost, no pair off WireGuard, nothing in clear."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.core.state import DeviceNames
from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, LabNode, build_cluster
from meshd.demo.stores import FileStore
from tests.support.kernel import BACKEND, slow
from tests.support.observe import eventually, metric, wg_show
from tests.support.psk import events
from tests.support.rotation import (
    ROTATION,
    KeyWatch,
    Pings,
    keys_agree,
    log_text,
    node_annotations,
    peers_hold,
    published_key,
    rotate_now,
    set_rotation_interval,
    settle,
    status_transports,
    stop_watching,
)
from tests.support.sniff import Sniffer, add_gateway, switch_ns

pytestmark = pytest.mark.netns


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def _mesh(lab: Lab, tmp_path: Path, backend: str = "userspace") -> tuple[Mesh, FileStore]:
    nodes = build_cluster(lab, 3)
    add_gateway(lab, nodes)  # a real node's default route: anything not sealed would show on the capture
    mesh = Mesh(lab, nodes, tmp_path)
    mesh.start(extra=("--wireguard", backend))
    assert mesh.wait_for("wireguard", timeout=slow(60)), "the agents did not converge"
    assert isinstance(mesh.store, FileStore)
    return mesh, mesh.store


def _no_loss(result: dict[str, tuple[int, list[int]]], capsys: pytest.CaptureFixture[str], what: str) -> None:
    with capsys.disabled():
        for label, (replies, lost) in result.items():
            print(f"\n{what}: {label}: {replies} replies, {len(lost)} lost {lost[:20]}")
    assert all(replies > 0 for replies, _ in result.values()), result
    assert all(not lost for _, lost in result.values()), f"{what}: pings lost {result}"


def test_scheduled_rotation_every_15s_loses_nothing(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh, store = _mesh(lab, tmp_path)
    n0, n1, n2 = mesh.nodes
    with Sniffer(switch_ns(lab)) as sniff:
        sniff.take()
        pings = Pings.start(lab, [(n0, n1), (n1, n2)], tmp_path)
        watch = KeyWatch(lab, mesh, store).start()
        time.sleep(1)
        set_rotation_interval(store, "15s")
        deadline = time.monotonic() + slow(80)  # a minute and a margin: a loaded machine passes slowly
        transports: set[str] = set()
        while time.monotonic() < deadline:
            transports |= status_transports(mesh)
            time.sleep(5)
        set_rotation_interval(store, "0s")
        assert settle(lab, mesh, store, timeout=slow(40)), "keys did not settle"
        with capsys.disabled():
            result, tally = stop_watching(watch, pings, sniff)
    _no_loss(result, capsys, "scheduled rotation")
    assert all(len(watch.keys[n.name]) >= 3 for n in mesh.nodes), watch.keys  # changed at least twice
    assert transports == {"wireguard"}, transports
    assert not watch.off_wireguard, watch.off_wireguard[:5]
    assert tally.in_clear == 0 and tally.drops == 0 and tally.wireguard > 0, str(tally)
    for agent in mesh.agents:
        _, text = agent.http_get(lab, "/metrics")
        assert (metric(text, "meshd_key_rotations_total") or 0) >= 2
    logs = log_text(mesh)
    assert logs.count("rotated key") >= 6
    for agent in mesh.agents:  # no key material in any log: neither the current key nor a seed
        secret = (agent.workdir / "keys" / f"{agent.node.name}.key").read_text().strip()
        seed = (agent.workdir / "keys" / f"{agent.node.name}.key.ed25519").read_text().strip()
        assert secret not in logs and seed not in logs
    assert eventually(lambda: all(_helper_gone(lab, n) for n in mesh.nodes), timeout=slow(15))


def _helper_gone(lab: Lab, node: LabNode) -> bool:
    return (
        DeviceNames(wireguard=node.wg_name).rotation_helper
        not in lab.ip(node.ns, "-o", "link", "show").stdout
    )


@pytest.mark.parametrize("backend", BACKEND)
def test_keys_rotate_command_rotates_now(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """Also on kernel WireGuard (main and helper links both kernel devices), in the kernel tier."""
    mesh, store = _mesh(lab, tmp_path, backend)
    n0, n1, n2 = mesh.nodes
    kind = lab.ip(n1.ns, "-d", "-o", "link", "show", n1.wg_name).stdout
    assert (" wireguard " in kind) == (backend == "kernel"), kind
    before = published_key(store, n1.name)
    pings = Pings.start(lab, [(n0, n1), (n1, n2)], tmp_path)
    time.sleep(1)
    res = rotate_now(lab, mesh.agents[1])
    assert res.returncode == 0, res.stdout + res.stderr
    new = res.stdout.strip()
    assert new != before and new == published_key(store, n1.name) == wg_show(lab, n1, "public-key")
    assert eventually(lambda: keys_agree(lab, mesh, store) and peers_hold(lab, mesh, store), timeout=slow(20))
    time.sleep(1)
    _no_loss(pings.stop(), capsys, f"meshd keys rotate ({backend})")
    _, text = mesh.agents[1].http_get(lab, "/metrics")
    assert metric(text, "meshd_key_rotations_total") == 1
    assert eventually(lambda: len(events(store.root, "KeyRotated", n1.name)) == 1, timeout=slow(15))
    (event,) = events(store.root, "KeyRotated", n1.name)  # one Event, naming the new key
    assert event["count"] == 1 and event["message"].endswith(new), event
    assert not any(events(store.root, "KeyRotated", n.name) for n in (n0, n2))


@pytest.mark.parametrize("killed", [0, 1], ids=["rotating-node", "hosting-peer"])
def test_agent_killed_mid_rotation_finishes_or_rolls_back(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], killed: int
) -> None:
    mesh, store = _mesh(lab, tmp_path)
    rotating, victim = mesh.agents[0], mesh.agents[killed]
    before = published_key(store, rotating.node.name)
    request = subprocess.Popen(
        ["ip", "netns", "exec", rotating.node.ns, sys.executable, "-m", "meshd", "keys", "rotate",
         "--run-dir", str(rotating.run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def diverting() -> bool:
            return ":divert:" in node_annotations(store, rotating.node.name).get(ROTATION, "")

        assert eventually(diverting, timeout=30, poll=0.02), "no divert phase seen"
        victim.stop(signal.SIGKILL)
    finally:
        request.wait(timeout=150)
    victim.start(lab)
    assert eventually(lambda: keys_agree(lab, mesh, store) and peers_hold(lab, mesh, store), timeout=60)
    assert mesh.wait_for("wireguard", timeout=60), "the mesh did not heal"
    assert eventually(lambda: all(_helper_gone(lab, n) for n in mesh.nodes), timeout=15)
    after = published_key(store, rotating.node.name)
    with capsys.disabled():
        print(f"\nSIGKILL of {victim.node.name} mid-rotation: key {'kept' if after == before else 'rotated'}")


def test_node_down_during_a_peer_rotation_catches_up(lab: Lab, tmp_path: Path) -> None:
    mesh, store = _mesh(lab, tmp_path)
    n0, _, n2 = mesh.nodes
    down = mesh.agents[2]
    down.stop()
    res = rotate_now(lab, mesh.agents[0])
    assert res.returncode == 0, res.stdout + res.stderr
    new = res.stdout.strip()
    assert new == published_key(store, n0.name)
    assert new not in lab.sh(n2.ns, "wg", "show", n2.wg_name, "peers").stdout  # n2 missed it
    down.start(lab)
    assert eventually(lambda: keys_agree(lab, mesh, store) and peers_hold(lab, mesh, store), timeout=30)
    assert mesh.wait_for("wireguard", timeout=60), "n2 did not catch up"
    assert mesh.reachable(n0, n2) and mesh.reachable(n2, n0)
