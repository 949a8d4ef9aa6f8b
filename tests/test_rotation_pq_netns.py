"""Key rotation with post-quantum PSKs on (issues 11 and 12 together), real agents and wireguard-go in
namespaces, file datastore: keys rotate every 15 s and PSKs every 20 s under 20 Hz pings both ways on two
pairs. Nothing is lost, every key changes at least twice, every pair ends with one PSK equal at both ends
(compared, never shown), nothing crosses the underlay in clear, the MeshNodes say `psk: active` and each
rotation is one KeyRotated Event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from meshd.demo.stores import FileStore
from tests.support.kernel import slow
from tests.support.observe import eventually
from tests.support.psk import all_agree, events, meshnode_psk, pair_psks
from tests.support.rotation import KeyWatch, Pings, set_rotation_interval, settle, stop_watching
from tests.support.sniff import Sniffer, add_gateway, switch_ns

pytestmark = pytest.mark.netns
PQ = {"postQuantum": "Enabled", "pskRotationInterval": "20s"}


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def test_rotation_with_pq_loses_nothing_and_ends_with_equal_psks(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = build_cluster(lab, 3)
    add_gateway(lab, nodes)  # a real node's default route: anything not sealed would show on the capture
    mesh = Mesh(lab, nodes, tmp_path)
    with Sniffer(switch_ns(lab)) as sniff:
        mesh.start(extra=("--wireguard", "userspace"))
        assert mesh.wait_for("wireguard", timeout=slow(60)), "the agents did not converge"
        store = mesh.store
        assert isinstance(store, FileStore)
        set_rotation_interval(store, "0s", **PQ)
        assert eventually(lambda: all_agree(pair_psks(lab, nodes)), timeout=slow(30)), "no PSK on every pair"
        sniff.take()
        n0, n1, n2 = nodes
        pings = Pings.start(lab, [(n0, n1), (n1, n2)], tmp_path)
        watch = KeyWatch(lab, mesh, store).start()
        set_rotation_interval(store, "15s", **PQ)
        time.sleep(slow(60))
        set_rotation_interval(store, "0s", **PQ)
        assert settle(lab, mesh, store, timeout=slow(40)), "keys did not settle"
        assert eventually(lambda: all_agree(pair_psks(lab, nodes)), timeout=slow(40)), (
            "a pair has no common PSK"
        )
        with capsys.disabled():
            result, tally = stop_watching(watch, pings, sniff)
    with capsys.disabled():
        for label, (replies, lost) in result.items():
            print(f"rotation with PQ: {label}: {replies} replies, {len(lost)} lost {lost[:20]}")
    assert all(replies > 0 and not lost for replies, lost in result.values()), result
    assert all(len(watch.keys[n.name]) >= 3 for n in nodes), watch.keys  # changed at least twice
    assert not watch.off_wireguard, watch.off_wireguard[:5]
    assert tally.in_clear == 0 and tally.drops == 0 and tally.wireguard > 0, str(tally)
    _status_objects(store.root, [n.name for n in nodes], watch.keys)


def _status_objects(root: Path, names: list[str], keys: dict[str, list[str]]) -> None:
    """Every MeshNode says `psk: active` for its peers (a state, nothing more); one KeyRotated Event per
    rotation, each naming the key it rotated to."""

    def psk_active() -> bool:
        return all(meshnode_psk(root, me) == {peer: "active" for peer in names if peer != me} for me in names)

    assert eventually(psk_active, timeout=slow(15)), {me: meshnode_psk(root, me) for me in names}
    for name in names:

        def all_events(name: str = name) -> bool:
            return len(events(root, "KeyRotated", name)) == len(keys[name]) - 1

        assert eventually(all_events, timeout=slow(40)), (name, events(root, "KeyRotated", name), keys[name])
        for event in events(root, "KeyRotated", name):
            assert event["count"] == 1 and event["message"].split()[-1] in keys[name][1:], event
