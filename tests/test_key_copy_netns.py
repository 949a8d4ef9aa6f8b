"""A compromised node copies its victim's public key (and the victim's key proof) onto its own record: real
agents, real wireguard-go, the file datastore, nodes with a default route. The victim keeps WireGuard to
its peers and loses no ping at 20 Hz, nothing crosses the underlay in clear, and the copier is the one
left out of WireGuard, with a `copied-public-key` problem that names it."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keys.proof import KeyProof
from keys.values import PublicKey
from meshd.core.codec import KEY_PROOF, PUBLIC_KEY
from meshd.demo.agents import Agent, Mesh
from meshd.demo.netlab import Lab, build_cluster
from meshd.demo.traffic import PingRun
from tests.support.observe import wg_peers, wg_show
from tests.support.sniff import Sniffer, add_gateway, switch_ns

pytestmark = pytest.mark.netns


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def published(mesh: Mesh, name: str) -> dict[str, str]:
    record = mesh.datastore.node(name)
    assert record is not None, name
    found: dict[str, str] = record["metadata"]["annotations"]
    return found


def copier_seen(agent: Agent, lab: Lab, copier: str) -> bool:
    """The agent reports the copier as left out of WireGuard, and says why."""
    doc = agent.status(lab)
    if doc is None:
        return False
    problems = [p for p in doc.get("problems", []) if p["kind"] == "copied-public-key"]
    peers: dict[str, Any] = {p["node"]: p for p in doc.get("peers", [])}
    return [p["nodes"] for p in problems] == [[copier]] and peers[copier]["transport"] != "wireguard"


def secrets_of(tmp_path: Path) -> list[str]:
    """Every private key and identity seed the agents hold (base64 and hex)."""
    texts = [p.read_text().strip() for p in (tmp_path / "keys").iterdir()]

    return [*texts, *(base64.b64decode(t).hex() for t in texts)]


def test_a_copied_key_leaves_the_copier_out_and_the_victim_untouched(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = build_cluster(lab, 3)
    add_gateway(lab, nodes)  # what is not routed through the mesh leaves on the underlay, in clear
    a, v, x = nodes
    mesh = Mesh(lab, nodes, tmp_path)
    mesh.start()
    assert mesh.wait_for("wireguard"), "three agents did not converge"
    victim = published(mesh, v.name)
    proof = KeyProof.parse(victim[KEY_PROOF])
    assert proof is not None and proof.proves(v.name, PublicKey.from_base64(victim[PUBLIC_KEY]))
    a_key, v_key = (wg_show(lab, n, "public-key") for n in (a, v))

    mesh.agents[2].stop()  # from here on the attacker writes x's record
    with Sniffer(switch_ns(lab)) as sniffer:
        pings = [PingRun.start(lab, v, a, seconds=12), PingRun.start(lab, a, v, seconds=12)]
        time.sleep(2)
        record = mesh.datastore.node(x.name)
        assert record is not None
        record["metadata"]["annotations"].update(
            {PUBLIC_KEY: victim[PUBLIC_KEY], KEY_PROOF: victim[KEY_PROOF]}
        )
        mesh.datastore.put_node(record)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(copier_seen(g, lab, x.name) for g in mesh.agents[:2]):
            time.sleep(0.2)
        assert all(copier_seen(g, lab, x.name) for g in mesh.agents[:2]), [g.log_tail() for g in mesh.agents]
        results = [p.finish() for p in pings]
        tally = sniffer.take()
    with capsys.disabled():
        print(f"\n[key copy] pings (sent, received) v->a, a->v: {results}; underlay: {tally}")

    assert all(sent == received and sent >= 200 for sent, received in results), results
    assert tally.in_clear == 0 and tally.drops == 0, str(tally)
    assert tally.wireguard > 0, "the capture saw no WireGuard traffic at all"
    # the victim's pair still runs over WireGuard, to the victim's own endpoint, on both sides
    docs = {g.node.name: g.status(lab) for g in mesh.agents[:2]}
    transports = {n: {p["node"]: p["transport"] for p in (d or {}).get("peers", [])} for n, d in docs.items()}
    assert transports[a.name][v.name] == transports[v.name][a.name] == "wireguard", transports
    assert wg_peers(lab, a) == {v_key} and wg_peers(lab, v) == {a_key}
    assert wg_show(lab, a, "endpoints") == f"{v_key}\t{v.underlay}:51820"
    for g in mesh.agents[:2]:  # and the logs say who is left out, and why
        assert f"{x.name} publishes the public key" in g.log_path.read_text(), g.log_tail()
    # no private key or seed anywhere a user or a peer can read
    metrics = "".join(g.http_get(lab, "/metrics")[1] for g in mesh.agents[:2])
    visible = "".join(
        [metrics, *(g.log_path.read_text() for g in mesh.agents)]
        + [p.read_text() for p in (tmp_path / "store" / "nodes").iterdir()]
    )
    leaked = [s[:6] + "..." for s in secrets_of(tmp_path) if s in visible]
    assert not leaked, f"secrets visible in logs, metrics or records: {leaked}"
