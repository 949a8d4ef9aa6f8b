"""The CNI conflist the agent writes: its shape, its ranges, and how it lands on disk."""

from __future__ import annotations

import ipaddress
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from meshd.cni import cni_conflist, write_cni_config
from meshd.model import IPNetwork

V4 = ipaddress.ip_network("198.19.1.0/24")
V6 = ipaddress.ip_network("2001:db8:1::/64")


def plugin(conf: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [p for p in conf["plugins"] if p["type"] == kind]
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
    with caplog.at_level(logging.DEBUG, logger="meshd.cni"):
        write_cni_config(tmp_path, conf)
        write_cni_config(tmp_path, conf)
    levels = [(r.levelno, "wrote" in r.getMessage()) for r in caplog.records]
    assert levels == [(logging.INFO, True), (logging.DEBUG, False)]
