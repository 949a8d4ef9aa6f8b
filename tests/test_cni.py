"""The CNI conflist the agent writes: its shape, its ranges, and how it lands on disk."""

from __future__ import annotations

import ipaddress
import json
import logging
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meshd.agent.cni import cni_conflist, write_cni_config
from meshd.core.model import IPNetwork
from tests.support.netns import Lab

V4 = ipaddress.ip_network("198.19.1.0/24")
V6 = ipaddress.ip_network("2001:db8:1::/64")


def plugin(conf: dict[str, Any], kind: str) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = conf["plugins"]
    (found,) = [p for p in plugins if p["type"] == kind]
    return found


def test_conflist_is_a_cni_1_0_0_bridge_then_portmap_chain() -> None:
    conf = cni_conflist(pod_cidrs=[V4], mtu=1420)
    assert conf["cniVersion"] == "1.0.0"
    assert conf["name"] == "meshd"
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    bridge = plugin(conf, "bridge")
    assert bridge["bridge"] == "meshd-cni0"
    assert bridge["isGateway"] is True
    assert bridge["hairpinMode"] is True
    assert bridge["ipMasq"] is False  # cross-node pod traffic keeps pod source addresses
    assert bridge["mtu"] == 1420
    assert bridge["ipam"]["type"] == "host-local"
    assert plugin(conf, "portmap")["capabilities"] == {"portMappings": True}
    assert json.loads(json.dumps(conf)) == conf  # plain JSON types only


@pytest.mark.parametrize(
    ("cidrs", "routes"),
    [
        pytest.param([V4], ["0.0.0.0/0"], id="v4"),
        pytest.param([V6], ["::/0"], id="v6"),
        pytest.param([V4, V6], ["0.0.0.0/0", "::/0"], id="dual-v4-first"),
        pytest.param([V6, V4], ["0.0.0.0/0", "::/0"], id="dual-v6-first"),
    ],
)
def test_one_range_set_per_pod_cidr_and_default_routes_per_family(
    cidrs: list[IPNetwork], routes: list[str]
) -> None:
    ipam = plugin(cni_conflist(pod_cidrs=cidrs, mtu=1400), "bridge")["ipam"]
    assert ipam["ranges"] == [[{"subnet": str(c)}] for c in cidrs]
    assert [r["dst"] for r in ipam["routes"]] == routes


def test_custom_network_name() -> None:
    assert cni_conflist(pod_cidrs=[V4], mtu=1500, name="mesh.net_1")["name"] == "mesh.net_1"


@pytest.mark.parametrize(
    ("cidrs", "mtu", "name", "message"),
    [
        pytest.param([], 1420, "meshd", "at least one pod CIDR", id="no-cidrs"),
        pytest.param([V4], 575, "meshd", "out of range 576..9000", id="mtu-too-small"),
        pytest.param([V4], 9001, "meshd", "out of range 576..9000", id="mtu-too-big"),
        pytest.param([V4], 0, "meshd", "out of range", id="mtu-zero"),
        pytest.param([V6], 1279, "meshd", "out of range 1280..9000", id="v6-below-1280"),
        pytest.param(
            [V4, ipaddress.ip_network("198.19.2.0/24")], 1420, "meshd", "one pod CIDR per", id="two-v4"
        ),
        pytest.param([V4], 1420, "bad name", "network name", id="bad-name"),
        pytest.param([V4], 1420, "", "network name", id="empty-name"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    cidrs: list[IPNetwork], mtu: int, name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cni_conflist(pod_cidrs=cidrs, mtu=mtu, name=name)


@pytest.mark.parametrize("mtu", [576, 9000], ids=["min", "max"])
def test_mtu_bounds_are_inclusive(mtu: int) -> None:
    assert plugin(cni_conflist(pod_cidrs=[V4], mtu=mtu), "bridge")["mtu"] == mtu


def test_write_creates_file_0644_and_is_idempotent(tmp_path: Path) -> None:
    conf = cni_conflist(pod_cidrs=[V4, V6], mtu=1420)
    target = tmp_path / "net.d"
    assert write_cni_config(target, conf) is True
    path = target / "10-meshd.conflist"
    assert json.loads(path.read_text()) == conf
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    before = path.stat()
    assert write_cni_config(target, conf) is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in target.iterdir()) == ["10-meshd.conflist"]


def test_write_replaces_changed_content_without_leaving_temp_files(tmp_path: Path) -> None:
    write_cni_config(tmp_path, cni_conflist(pod_cidrs=[V4], mtu=1420))
    changed = cni_conflist(pod_cidrs=[V4], mtu=1380)
    assert write_cni_config(tmp_path, changed) is True
    assert json.loads((tmp_path / "10-meshd.conflist").read_text()) == changed
    assert [p.name for p in tmp_path.iterdir()] == ["10-meshd.conflist"]


def test_write_replaces_a_foreign_edit(tmp_path: Path) -> None:
    path = tmp_path / "10-meshd.conflist"
    path.write_text("{}")
    conf = cni_conflist(pod_cidrs=[V4], mtu=1420)
    assert write_cni_config(tmp_path, conf) is True
    assert json.loads(path.read_text()) == conf


def test_write_honours_filename_and_refuses_paths(tmp_path: Path) -> None:
    conf = cni_conflist(pod_cidrs=[V4], mtu=1420)
    assert write_cni_config(tmp_path, conf, filename="05-mesh.conflist") is True
    assert (tmp_path / "05-mesh.conflist").exists()
    for bad in ("../x.conflist", "10-meshd.conf"):
        with pytest.raises(ValueError, match=r"\.conflist"):
            write_cni_config(tmp_path, conf, filename=bad)
    assert [p.name for p in tmp_path.iterdir()] == ["05-mesh.conflist"]


def test_write_logs_change_at_info_and_noop_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = cni_conflist(pod_cidrs=[V4], mtu=1420)
    with caplog.at_level(logging.DEBUG, logger="meshd.agent.cni"):
        write_cni_config(tmp_path, conf)
        write_cni_config(tmp_path, conf)
    levels = [(r.levelno, "wrote" in r.getMessage()) for r in caplog.records]
    assert levels == [(logging.INFO, True), (logging.DEBUG, False)]


# --- the real plugins accept it (Debian's containernetworking-plugins, inside lab namespaces) ----------

CNI_BIN = Path("/usr/lib/cni")


def cni_exec(lab: Lab, *, ns: str, conf: dict[str, Any], command: str, pod_netns: str) -> dict[str, Any]:
    """Invoke one plugin of the chain the way a container runtime does (CNI spec: env + config on stdin)."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"meshd-test-{lab.token}",
        "CNI_NETNS": f"/var/run/netns/{pod_netns}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_BIN),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    res = subprocess.run(
        ["ip", "netns", "exec", ns, str(CNI_BIN / conf["type"])],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, f"{conf['type']} {command}: {res.stdout} {res.stderr}"
    return json.loads(res.stdout) if res.stdout.strip() else {}


@pytest.mark.netns
@pytest.mark.skipif(not (CNI_BIN / "bridge").exists(), reason="apt-get install containernetworking-plugins")
def test_real_cni_plugins_wire_a_pod_with_the_conflist(tmp_path: Path) -> None:
    conf = cni_conflist(pod_cidrs=[V4, V6], mtu=1400)
    with Lab() as lab:
        node, pod = lab.ns("node"), lab.ns("pod")
        prev: dict[str, Any] | None = None
        for plugin_conf in conf["plugins"]:  # what a runtime does with a conflist on ADD
            full = {**plugin_conf, "cniVersion": conf["cniVersion"], "name": conf["name"]}
            if "ipam" in full:
                full["ipam"] = {**full["ipam"], "dataDir": str(tmp_path / "ipam")}
            if prev is not None:
                full["prevResult"] = prev
            prev = cni_exec(lab, ns=node, conf=full, command="ADD", pod_netns=pod)
        assert prev is not None
        addrs = [ipaddress.ip_interface(ip["address"]) for ip in prev["ips"]]
        assert {a.network for a in addrs} == {V4, V6}
        pod_link = json.loads(lab.ip(pod, "-j", "link", "show", "eth0").stdout)[0]
        assert pod_link["mtu"] == 1400
        routes = json.loads(lab.ip(pod, "-j", "route", "show", "default").stdout)
        assert [r["gateway"] for r in routes] == ["198.19.1.1"]
        routes6 = json.loads(lab.ip(pod, "-6", "-j", "route", "show", "default").stdout)
        assert [r["gateway"] for r in routes6] == ["2001:db8:1::1"]
        bridge = json.loads(lab.ip(node, "-j", "addr", "show", "meshd-cni0").stdout)[0]
        assert "198.19.1.1" in [a["local"] for a in bridge["addr_info"]]
        v4 = next(str(a.ip) for a in addrs if a.version == 4)
        assert lab.wait_ping(node, v4, attempts=5)
