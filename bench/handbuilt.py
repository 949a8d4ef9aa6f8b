"""The baselines: the same two-node topology built by hand with wireguard-go + `wg`, or with `ip link add
vxlan` + `bridge fdb`, exactly as an operator would without meshd."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from keys.values import PrivateKey
from meshd.demo.netlab import Lab, LabNode


def wireguard_pair(
    lab: Lab, a: LabNode, b: LabNode, workdir: Path, *, port: int = 51820, binary: str = "wireguard-go"
) -> None:
    """`binary`: which wireguard-go (Debian's on PATH by default)."""
    keys = {n.name: PrivateKey.generate() for n in (a, b)}
    for node in (a, b):
        # Detached in its own session, as wireguard-go's daemon mode (and meshd) run it. This matters here:
        # with sched_autogroup on, a session is a CPU scheduling group, and a CPU-bound wireguard-go sharing
        # the benchmark's group measured ~10% faster than one in its own, whoever started it.
        lab.popen(
            node.ns,
            binary,
            "-f",
            node.wg_name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    for node in (a, b):
        sock = Path(f"/var/run/wireguard/{node.wg_name}.sock")
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.01)
    for node, peer in ((a, b), (b, a)):
        keyfile = workdir / f"{node.name}.key"
        keyfile.write_text(keys[node.name].base64 + "\n")
        keyfile.chmod(0o600)
        allowed = ",".join(str(c) for c in peer.pod_cidrs)
        lab.sh(node.ns, "wg", "set", node.wg_name, "private-key", str(keyfile), "listen-port", str(port),
               "peer", keys[peer.name].public_key().base64, "endpoint", f"{peer.underlay}:{port}", "allowed-ips", allowed)  # fmt: skip
        lab.ip(node.ns, "link", "set", node.wg_name, "mtu", "1420", "up")
        for cidr in node.pod_cidrs:
            lab.ip(
                node.ns, "addr", "add", f"{cidr.network_address}/{cidr.max_prefixlen}", "dev", node.wg_name
            )
        for cidr in peer.pod_cidrs:
            lab.ip(node.ns, "route", "add", str(cidr), "dev", node.wg_name)


def vxlan_pair(lab: Lab, a: LabNode, b: LabNode, *, vni: int = 4096, port: int = 4789) -> None:
    macs = {}
    for node in (a, b):
        lab.ip(node.ns, "link", "add", "vx0", "type", "vxlan", "id", str(vni), "dstport", str(port),
               "local", str(node.underlay), "dev", node.uplink, "nolearning")  # fmt: skip
        lab.ip(node.ns, "link", "set", "vx0", "mtu", "1450", "up")
        for cidr in node.pod_cidrs:
            lab.ip(node.ns, "addr", "add", f"{cidr.network_address}/{cidr.max_prefixlen}", "dev", "vx0")
        macs[node.name] = lab.sh(node.ns, "cat", "/sys/class/net/vx0/address").stdout.strip()
    for node, peer in ((a, b), (b, a)):
        mac = macs[peer.name]
        lab.sh(node.ns, "bridge", "fdb", "append", mac, "dev", "vx0", "dst", str(peer.underlay))
        for cidr in peer.pod_cidrs:
            gw = str(cidr.network_address)
            lab.ip(node.ns, "neigh", "replace", gw, "lladdr", mac, "dev", "vx0", "nud", "permanent")
            lab.ip(node.ns, "route", "add", str(cidr), "via", gw, "dev", "vx0", "onlink")
