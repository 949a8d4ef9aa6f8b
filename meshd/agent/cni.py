"""The CNI network configuration the agent writes for the container runtime (`--cni-conf-dir`).

`cni_conflist` is pure: it turns the node's pod CIDRs and the pod MTU into a CNI 1.0.0 conflist of
`bridge` (with `host-local` IPAM) and `portmap`. `write_cni_config` puts it on disk atomically and only
when the content changed, so a resync that finds nothing new does not touch the file (the runtime watches
the directory).

Masquerading: the bridge plugin's `ipMasq` SNATs everything leaving the pod subnet, including traffic to
pods on OTHER nodes. That would hide pod source addresses from peers (network policies, logs) and make the
mesh carry node addresses instead of pod addresses, so `ipMasq` is false. Egress to destinations outside
the cluster's pod CIDRs still needs SNAT; that rule belongs to the agent (or ip-masq-agent), which knows
every pod CIDR in the cluster, not to a per-node bridge config that only knows its own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshd.core.model import IPNetwork
from meshd.fsutil import write_atomic

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
BRIDGE_NAME = "meshd-cni0"
MIN_MTU = 576  # the IPv4 minimum datagram every host must accept
MIN_MTU_V6 = 1280  # IPv6 links must carry at least 1280 bytes
MAX_MTU = 9000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # the CNI spec's network name grammar
_DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}


def cni_conflist(*, pod_cidrs: Sequence[IPNetwork], mtu: int, name: str = "meshd") -> dict[str, Any]:
    """A CNI 1.0.0 conflist giving pods an address from each of `pod_cidrs` (one per family) on a bridge.

    Raises ValueError when there is no pod CIDR, two CIDRs of one family, an MTU outside 576..9000
    (1280..9000 with IPv6), or a network name the CNI spec does not allow.
    """
    _check(pod_cidrs=pod_cidrs, mtu=mtu, name=name)
    families = sorted({cidr.version for cidr in pod_cidrs})
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": str(cidr)}] for cidr in pod_cidrs],
        "routes": [{"dst": _DEFAULT_ROUTE[family]} for family in families],
    }
    bridge = {
        "type": "bridge",
        "bridge": BRIDGE_NAME,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "mtu": mtu,
        "ipam": ipam,
    }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    return {"cniVersion": CNI_VERSION, "name": name, "plugins": [bridge, portmap]}


def _check(*, pod_cidrs: Sequence[IPNetwork], mtu: int, name: str) -> None:
    if not pod_cidrs:
        raise ValueError(
            "CNI config needs at least one pod CIDR; the node has none (is node.spec.podCIDRs set?)"
        )
    versions = [cidr.version for cidr in pod_cidrs]
    if len(set(versions)) != len(versions):
        shown = ", ".join(str(c) for c in pod_cidrs)
        raise ValueError(f"CNI config takes at most one pod CIDR per address family, got {shown}")
    low = MIN_MTU_V6 if 6 in versions else MIN_MTU
    if isinstance(mtu, bool) or not low <= mtu <= MAX_MTU:
        raise ValueError(f"pod MTU {mtu} out of range {low}..{MAX_MTU}")
    if not _NAME.match(name):
        raise ValueError(f"CNI network name {name!r} must match {_NAME.pattern}")


def render_conflist(conflist: dict[str, Any]) -> bytes:
    """The exact bytes written to disk: stable key order, so equal configs give equal files."""
    return (json.dumps(conflist, indent=2, sort_keys=True) + "\n").encode()


def write_cni_config(
    directory: Path, conflist: dict[str, Any], *, filename: str = "10-meshd.conflist"
) -> bool:
    """Write `conflist` to `directory/filename` (mode 0644, temp file + rename). True when the file changed.

    An identical file is left alone (no write, no new inode, no event for the runtime's watcher).
    """
    if "/" in filename or not filename.endswith(".conflist"):
        raise ValueError(f"CNI config file name {filename!r} must be a plain name ending in .conflist")
    path = directory / filename
    data = render_conflist(conflist)
    try:
        if path.read_bytes() == data:
            log.debug("CNI config %s is up to date", path)
            return False
        reason = "content changed"
    except FileNotFoundError:
        reason = "file missing"
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o644)
    log.info("wrote CNI config %s (%s)", path, reason)
    return True
