"""Key rotation through the real kube-apiserver, agents on Pod-bound tokens of the manifests' ServiceAccount:
the ClusterRole and the admission policy allow every write rotation makes (the rotating node's key, proof
and `key-rotation`, its peers' `key-rotation-ack`), and nothing is lost meanwhile."""

from __future__ import annotations

import time

import pytest

from keys.proof import KeyProof
from keys.values import PublicKey
from meshd.demo.traffic import PingRun
from tests.conftest import RealCluster
from tests.support.agents import say, scrape
from tests.support.observe import eventually, metric, samples, wg_peers, wg_show
from tests.support.rotation import rotate_now

pytestmark = [pytest.mark.netns, pytest.mark.realapi]


def test_rotate_through_the_real_api(real_cluster: RealCluster, capsys: pytest.CaptureFixture[str]) -> None:
    c, lab, nodes, mesh = real_cluster.started()
    n0, n1, n2 = nodes[:3]
    before = c.annotations(n1)["meshd.io/public-key"]
    pings = [PingRun.start(lab, a, b, seconds=20) for a, b in ((n0, n1), (n1, n0), (n1, n2), (n2, n1))]
    time.sleep(1)
    res = rotate_now(lab, mesh.agents[1])
    assert res.returncode == 0, res.stdout + res.stderr
    new = res.stdout.strip()
    ann = c.annotations(n1)
    assert new != before and ann["meshd.io/public-key"] == new == wg_show(lab, n1, "public-key")
    proof = KeyProof.parse(ann["meshd.io/key-proof"])
    assert proof is not None and proof.proves(n1.name, PublicKey.from_base64(new))
    assert eventually(lambda: all(new in wg_peers(lab, n) for n in (n0, n2)), timeout=30)
    done = ("meshd.io/key-rotation", "meshd.io/key-rotation-ack")
    assert eventually(lambda: all(not set(done) & set(c.annotations(n)) for n in nodes[:3]), timeout=30)
    results = [p.finish() for p in pings]
    say(capsys, f"[real API] meshd keys rotate: pings (sent, received) {results}")
    assert all(sent == received for sent, received in results), results
    for agent in mesh.agents:
        text = scrape(mesh, agent)
        assert not [s for s in samples(text, "meshd_datastore_errors_total") if 'kind="forbidden"' in s]
    assert metric(scrape(mesh, mesh.agents[1]), "meshd_key_rotations_total") == 1
