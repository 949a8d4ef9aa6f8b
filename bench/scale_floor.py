"""The hand-built floor of bench.scale: what an expert types for the same state as the agent's initial sync,
`wg setconf` of the peers plus one `ip -batch` (routes, neighbour entries) and one `bridge -batch` (FDB
entries), on baseline devices of their own (a second wireguard-go, a second VXLAN link, a separate table),
so that nothing they write can be mistaken for the agent's."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.scale_probe import Obj, poll_until
from keys.values import PrivateKey

TABLE = 4242  # the baseline's routes: not the main table, where the agent's go


@dataclass(frozen=True, slots=True)
class Floor:
    setconf_s: float
    ip_batch_s: float
    bridge_batch_s: float

    @property
    def total_s(self) -> float:
        return self.setconf_s + self.ip_batch_s + self.bridge_batch_s


def _peer_facts(obj: Obj) -> tuple[str, str, str, str, str]:
    ann = obj["metadata"]["annotations"]
    cidr = obj["spec"]["podCIDRs"][0]
    ann["meshd.io/endpoint"].rsplit(":", 1)[0]
    gateway = str(ipaddress.ip_network(cidr).network_address)
    return ann["meshd.io/public-key"], ann["meshd.io/endpoint"], cidr, gateway, ann["meshd.io/vxlan-mac"]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _timed(*argv: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


@contextlib.contextmanager
def _wireguard_go(interface: str) -> Iterator[None]:
    proc = subprocess.Popen(
        ["wireguard-go", "-f", interface], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        if not poll_until(Path(f"/var/run/wireguard/{interface}.sock").exists, timeout=10, alive=proc):
            raise SystemExit("wireguard-go for the baseline did not start")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def measure_floor(interface: str, vxlan: str, uplink: str, nodes: list[Obj], work: Path) -> Floor:
    """Seconds each hand-typed step takes to load `nodes` onto fresh baseline devices."""
    conf = ["[Interface]", f"PrivateKey = {PrivateKey.generate().base64}", "ListenPort = 51821"]
    routes, fdb = [], []
    for obj in nodes:
        key, endpoint, cidr, gateway, mac = _peer_facts(obj)
        conf += ["[Peer]", f"PublicKey = {key}", f"Endpoint = {endpoint}", f"AllowedIPs = {cidr}"]
        routes += [
            f"route replace {cidr} dev {interface} table {TABLE}",
            f"neigh replace {gateway} lladdr {mac} dev {vxlan} nud permanent",
        ]
        fdb.append(f"fdb append {mac} dev {vxlan} dst {endpoint.rsplit(':', 1)[0]}")
    files = [
        _write(work / name, lines) for name, lines in (("b.conf", conf), ("b.ip", routes), ("b.br", fdb))
    ]
    local = (
        subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", uplink], capture_output=True, text=True, check=True
        )
        .stdout.split()[3]
        .split("/")[0]
    )
    with _wireguard_go(interface):
        try:
            subprocess.run(["ip", "link", "add", vxlan, "type", "vxlan", "id", "4242", "dstport", "4790",
                            "local", local, "dev", uplink, "nolearning"], check=True)  # fmt: skip
            subprocess.run(["ip", "link", "set", vxlan, "up"], check=True)
            setconf = _timed("wg", "setconf", interface, str(files[0]))
            subprocess.run(["ip", "link", "set", interface, "up"], check=True)
            floor = Floor(
                setconf, _timed("ip", "-batch", str(files[1])), _timed("bridge", "-batch", str(files[2]))
            )
        finally:
            subprocess.run(["ip", "route", "flush", "table", str(TABLE)], check=False, capture_output=True)
            subprocess.run(["ip", "link", "del", vxlan], check=False, capture_output=True)
            for f in files:
                f.unlink()
    return floor
