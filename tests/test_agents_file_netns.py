"""Real agents as processes, one per node namespace, the file datastore (issue 4), over wireguard-go and
(marked `kernel`, run by scripts/vm) kernel WireGuard chosen by `--wireguard auto`."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.demo.agents import Mesh
from meshd.demo.netlab import Lab, build_cluster
from tests.support.kernel import BACKEND, kernel, slow
from tests.support.observe import eventually, log_records, metric, owned_routes, wg_peers, wg_show
from tests.support.pinging import PingWatch

pytestmark = pytest.mark.netns

WIREGUARD = {"userspace": ("--wireguard", "userspace"), "kernel": ()}  # kernel: `auto` must choose it


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def link_names(lab: Lab, ns: str) -> set[str]:
    return {
        line.split(":")[1].strip().split("@")[0]
        for line in lab.ip(ns, "-o", "link", "show").stdout.splitlines()
    }


def _mesh(lab: Lab, tmp_path: Path, n: int, backend: str) -> Mesh:
    """n agents started over `backend`, converged on WireGuard, each on the backend it was meant to use."""
    mesh = Mesh(lab, build_cluster(lab, n), tmp_path)
    mesh.start(extra=WIREGUARD[backend])
    assert mesh.wait_for("wireguard", timeout=slow(60)), "the agents did not converge"
    chosen = "WireGuard backend: " + ("kernel" if backend == "kernel" else "wireguard-go")
    for node, agent in zip(mesh.nodes, mesh.agents, strict=True):
        detail = lab.ip(node.ns, "-d", "-o", "link", "show", node.wg_name).stdout
        assert (" wireguard " in detail) == (backend == "kernel"), detail
        assert any(str(r.get("msg", "")).startswith(chosen) for r in log_records(agent.log_path))
    return mesh


class Meshes:
    """One converged 3-node mesh per backend, shared by the tests that leave it whole (the toggles, the
    agent restart): a mesh costs seconds on a host and minutes in the emulated test VM. Each is built on
    first use, so any test also runs alone."""

    def __init__(self, tmp: pytest.TempPathFactory, stack: contextlib.ExitStack) -> None:
        self._tmp, self._stack, self._meshes = tmp, stack, dict[str, Mesh]()

    def get(self, backend: str) -> Mesh:
        if backend not in self._meshes:
            lab = self._stack.enter_context(Lab())
            self._meshes[backend] = _mesh(lab, self._tmp.mktemp(f"mesh-{backend}"), 3, backend)
        return self._meshes[backend]


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meshes]:
    with contextlib.ExitStack() as stack:
        yield Meshes(tmp_path_factory, stack)


def test_join_leave_and_garbage(lab: Lab, tmp_path: Path) -> None:
    nodes = build_cluster(lab, 4)
    mesh = Mesh(lab, nodes[:3], tmp_path)
    mesh.start()
    assert mesh.wait_for("wireguard"), "three agents did not converge"
    code, _ = mesh.agents[0].http_get(lab, "/readyz")
    assert code == 200
    # --cni-conf-dir: a CNI conflist for the node's pod CIDR, with the overlay MTU (1500 - 80)
    conf = json.loads((mesh.agents[0].cni_dir / "10-meshd.conflist").read_text())
    bridge = conf["plugins"][0]
    assert bridge["mtu"] == 1420
    assert [r[0]["subnet"] for r in bridge["ipam"]["ranges"]] == [str(nodes[0].pod_cidrs[0])]

    mesh.nodes.append(nodes[3])
    mesh.add(nodes[3])
    assert mesh.wait_for("wireguard"), "the fourth node did not join"
    assert all(len(wg_peers(lab, n)) == 3 for n in nodes)

    # garbage annotations on a new record: ignored, counted, nobody disturbed
    garbage = {
        "metadata": {
            "name": "junk",
            "annotations": {"meshd.io/public-key": "not-a-key", "meshd.io/endpoint": "x"},
        },
        "spec": {"podCIDRs": ["198.19.99.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.99"}]},
    }
    (tmp_path / "store" / "nodes" / "junk.json").write_text(json.dumps(garbage))
    time.sleep(2)
    assert all(len(wg_peers(lab, n)) == 3 for n in nodes)
    _, metrics = mesh.agents[0].http_get(lab, "/metrics")
    assert metric(metrics, "meshd_invalid_peers", '{reason="bad-public-key"}') == 1
    assert "198.19.99.0" not in owned_routes(lab, nodes[0])

    # deleting a record removes that node from everyone's peers and routes
    mesh.agents[3].stop()
    mesh.agents.pop()
    mesh.nodes.pop()
    (tmp_path / "store" / "nodes" / "node3.json").unlink()
    assert mesh.wait_for("wireguard")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(len(wg_peers(lab, n)) != 2 for n in nodes[:3]):
        time.sleep(0.2)
    assert all(len(wg_peers(lab, n)) == 2 for n in nodes[:3])
    assert all(str(nodes[3].pod_cidrs[0]) not in owned_routes(lab, n) for n in nodes[:3])


@pytest.mark.parametrize(
    ("backend", "fallback"),
    [
        pytest.param("userspace", "VXLAN", id="userspace-VXLAN"),
        pytest.param("kernel", "VXLAN", marks=kernel, id="kernel-VXLAN"),
        pytest.param("kernel", "IPIP", marks=kernel, id="kernel-IPIP"),
    ],
)
def test_toggle_encryption_under_ping(
    meshes: Meshes, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, fallback: str
) -> None:
    mesh = meshes.get(backend)
    lab = mesh.lab
    steps = [("Disabled", fallback.lower()), ("Enabled", "wireguard")]
    gen = mesh.set_mode("Enabled", fallback=fallback)
    assert mesh.wait_for("wireguard", timeout=slow(60))
    losses = []
    for mode, transport in steps:
        ping = PingWatch.start(lab, mesh.nodes[0], mesh.nodes[1], tmp_path / f"ping-{mode}.txt")
        time.sleep(1)
        gen = mesh.set_mode(mode, fallback=fallback, generation=gen + 1)
        assert mesh.wait_for(transport, timeout=slow(60)), f"{mode} did not move every pair to {transport}"
        time.sleep(1)
        replies, lost = ping.stop()
        losses.append(lost)
        assert replies > 0
    with capsys.disabled():
        print(f"\n[toggle {backend}/{fallback}] pings lost: Enabled->Disabled {losses[0]}, back {losses[1]}")
    # make-before-break: a toggle may not black-hole traffic; wireguard-go may drop a stray packet
    if backend == "kernel":
        assert losses == [[], []], losses
    else:
        assert max(len(lost) for lost in losses) <= 2, losses
    # every agent reports the generation it applied
    store = mesh.workdir / "store" / "nodes"
    gens = {
        json.loads(p.read_text())["metadata"]["annotations"]["meshd.io/observed-generation"]
        for p in store.glob("*.json")
    }
    assert gens == {str(gen)}


@pytest.mark.parametrize("backend", BACKEND)
def test_a_peer_and_a_route_removed_by_hand_come_back(meshes: Meshes, backend: str) -> None:
    """WireGuard sends no notifications, so every resync (5 s here) reads the device again: a peer removed
    with `wg` comes back then, without waiting for a full read of the kernel (the agent counts the re-add
    as a drift repair; a pass may run between the removal and our look, so its absence is not asserted).
    A route deleted with `ip` comes back at once, from its notification."""
    mesh = meshes.get(backend)
    lab = mesh.lab
    mesh.set_mode("Enabled")
    assert mesh.wait_for("wireguard", timeout=slow(60))
    n0, n1 = mesh.nodes[0], mesh.nodes[1]
    key1 = wg_show(lab, n1, "public-key")

    def peers_re_added() -> float:
        text = mesh.agents[0].http_get(lab, "/metrics")[1]
        return metric(text, "meshd_drift_repairs_total", '{kind="AddPeer"}') or 0.0

    before = peers_re_added()
    lab.sh(n0.ns, "wg", "set", n0.wg_name, "peer", key1, "remove")
    back = eventually(lambda: key1 in wg_peers(lab, n0) and peers_re_added() > before, timeout=slow(20))
    assert back, "the peer was not put back"
    cidr = str(n1.pod_cidrs[0])
    lab.ip(n0.ns, "route", "del", cidr)
    assert eventually(lambda: cidr in owned_routes(lab, n0), timeout=slow(20)), "the route was not put back"
    assert eventually(lambda: mesh.reachable(n0, n1), timeout=slow(20))


@pytest.mark.parametrize("backend", BACKEND)
def test_a_link_set_down_by_hand_is_set_up_again_with_its_routes(meshes: Meshes, backend: str) -> None:
    """`ip link set WG down` makes the kernel drop every route through the link and refuse new ones: the
    link's notification makes the agent read the kernel again, set the link up, and put the routes back."""
    mesh = meshes.get(backend)
    lab = mesh.lab
    mesh.set_mode("Enabled")
    assert mesh.wait_for("wireguard", timeout=slow(60))
    n0, n1 = mesh.nodes[0], mesh.nodes[1]
    cidr = str(n1.pod_cidrs[0])

    def up() -> bool:
        out = lab.ip(n0.ns, "-o", "link", "show", "dev", n0.wg_name).stdout
        return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")

    lab.ip(n0.ns, "link", "set", n0.wg_name, "down")
    assert eventually(up, timeout=slow(20)), "the link was not set up again"
    assert eventually(lambda: cidr in owned_routes(lab, n0), timeout=slow(20)), "the route was not put back"
    assert eventually(lambda: mesh.reachable(n0, n1), timeout=slow(20))


@pytest.mark.parametrize("backend", BACKEND)
def test_agent_restart_keeps_traffic_and_writes_nothing(
    meshes: Meshes, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    mesh = meshes.get(backend)
    lab = mesh.lab
    mesh.set_mode("Enabled")  # as a new mesh has it: a toggle before may have left IPIP as the fallback
    assert mesh.wait_for("wireguard", timeout=slow(60))
    victim = mesh.agents[1]
    ping = PingWatch.start(lab, mesh.nodes[0], mesh.nodes[1], tmp_path / "ping.txt")
    time.sleep(1)
    victim.stop(signal.SIGKILL)
    time.sleep(1)
    victim.start(lab)
    deadline = time.monotonic() + slow(30)
    while time.monotonic() < deadline and victim.http_get(lab, "/readyz")[0] != 200:
        time.sleep(0.2)
    assert victim.http_get(lab, "/readyz")[0] == 200
    time.sleep(1)
    replies, lost = ping.stop()
    with capsys.disabled():
        print(
            f"\n[restart {backend}] pings lost across an agent kill+restart: {lost} of {replies + len(lost)}"
        )
    assert replies > 0 and lost == []
    _, metrics = victim.http_get(lab, "/metrics")
    repairs = [line for line in metrics.splitlines() if line.startswith("meshd_drift_repairs_total")]
    assert repairs == [], f"the restarted agent changed the kernel: {repairs}"


@pytest.mark.parametrize("backend", BACKEND)
def test_cleanup_removes_what_meshd_owns(lab: Lab, tmp_path: Path, backend: str) -> None:
    mesh = _mesh(lab, tmp_path, 2, backend)
    node, agent = mesh.nodes[0], mesh.agents[0]
    links_before = link_names(lab, node.ns)
    agent.stop()
    assert lab.ip(node.ns, "link", "show", node.wg_name, check=False).returncode == 0, (
        "SIGTERM must keep the mesh"
    )
    lab.ip(node.ns, "route", "add", "198.19.200.0/24", "dev", "eth0", "proto", "static")  # not ours
    res = agent.command(lab, "cleanup")
    assert res.returncode == 0, res.stdout + res.stderr
    links = lab.ip(node.ns, "-br", "link").stdout
    assert node.wg_name not in links and "meshd-vxlan" not in links
    assert link_names(lab, node.ns) == links_before - {node.wg_name, "meshd-vxlan"}, "a link not ours went"
    assert lab.ip(node.ns, "route", "show", "proto", "109").stdout.strip() == ""
    assert "198.19.200.0/24" in lab.ip(node.ns, "route").stdout, "a route meshd does not own was removed"
    record = json.loads((tmp_path / "store" / "nodes" / f"{node.name}.json").read_text())
    assert not any(k.startswith("meshd.io/") for k in record["metadata"].get("annotations", {}))
    assert not Path(f"/var/run/wireguard/{node.wg_name}.sock").exists()


def test_a_file_datastore_agent_never_imports_the_kubernetes_client(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lazy imports (memory, start-up time): a whole run on the file datastore, mesh formed, loads neither
    the Kubernetes client nor its pydantic models, nor YAML (no MeshConfig file), nor the parts of pyroute2
    only its package `__init__` imports (the agent imports the modules it uses: this run proves they work
    so); the endpoints' aiohttp comes only after our record was published (meshd.agent.endpoints). Python
    reports every import it makes (PYTHONPROFILEIMPORTTIME), in order with the agent's log lines."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # inherited by the agents through `ip netns exec`
    monkeypatch.setenv("MESHD_LAB_FORK", "0")  # a cold start, as a user's: a fork inherits warm imports
    mesh = Mesh(lab, build_cluster(lab, 2), tmp_path)
    mesh.start()
    assert mesh.wait_for("wireguard"), "the agents did not converge"
    mesh.stop()
    for agent in mesh.agents:
        lines = agent.log_path.read_text().splitlines()
        published = next(i for i, line in enumerate(lines) if "published annotations" in line)
        imported, early = (
            {line.rsplit("|", 1)[1].strip() for line in part if line.startswith("import time:")}
            for part in (lines, lines[:published])
        )
        assert "meshd.datastore.file" in early, "no import report: the check would prove nothing"
        assert not {m for m in imported if m.split(".")[0] in {"kubernetes", "pydantic", "yaml"}}
        started = next(line for line in lines if "starting the HTTP endpoints" in line)
        if "our record is published" in started:  # (a loaded machine may reach START_WITHIN first)
            assert not {m for m in early if m.split(".")[0] == "aiohttp"}, "aiohttp before our first publish"
        assert "aiohttp.web" in imported, "the endpoints never started"
        assert "pyroute2.iproute.linux" in imported
        assert not imported & {
            "pyroute2.ndb.main",
            "pyroute2.ipdb",
            "pyroute2.conntrack",
            "pyroute2.nftables",
        }
