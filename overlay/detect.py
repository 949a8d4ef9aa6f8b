"""Which WireGuard backend this node can run: the kernel module, else wireguard-go, else none.

"auto" prefers the kernel (faster, no process to keep alive) and falls back to wireguard-go. When
neither works, UnsupportedError says why; the agent then runs the unencrypted fallback only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from keys.values import PrivateKey
from meshd.core.ports import WireGuardDevice
from meshd.errors import ConfigError, MeshdError, UnsupportedError
from meshd.netlink import NetlinkSocket, translate, wireguard_socket
from overlay.kernel import KernelWireGuard
from overlay.userspace import WireGuardGo
from overlay.wireguard import DEFAULT_RUN_DIR, MODES

log = logging.getLogger(__name__)

ABSENT = (errno.ENOENT, errno.EOPNOTSUPP)  # no genl family / no wireguard link kind


@dataclass(frozen=True, slots=True)
class Probe:
    available: bool
    reason: str


async def _genl_family(netns: str | None) -> bool:
    try:
        sock = await wireguard_socket(netns)
    except NetlinkError as exc:
        if exc.code in ABSENT:
            return False
        raise translate(exc, "probing the wireguard generic-netlink family") from exc
    sock.close()
    return True


async def probe_kernel_wireguard(netns: str | None = None) -> Probe:
    """The `wireguard` genl family is there, or adding a `wireguard` link works (it loads the module;
    the probe link is deleted at once)."""
    if await _genl_family(netns):
        return Probe(True, "the kernel has the wireguard generic-netlink family")
    probe = f"meshdprobe{secrets.token_hex(2)}"
    async with NetlinkSocket(netns=netns) as sock:
        try:
            await sock.add_link(probe, "wireguard", lacking="wireguard")
        except UnsupportedError:
            return Probe(False, "kernel lacks wireguard (no genl family; link add: operation not supported)")
        with contextlib.suppress(MeshdError):
            await sock.delete_link(probe)
    return Probe(True, "the kernel can create wireguard links")


def probe_wireguard_go(binary: str = "wireguard-go") -> Probe:
    """wireguard-go is on PATH and /dev/net/tun can be opened."""
    path = shutil.which(binary)
    if path is None:
        return Probe(False, f"{binary} not found on PATH")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return Probe(False, f"/dev/net/tun is not usable: {exc.strerror}")
    os.close(fd)
    return Probe(True, f"{path} with /dev/net/tun")


async def select_backend(
    mode: str,
    *,
    name: str,
    private_key: PrivateKey,
    netns: str | None = None,
    run_dir: Path = DEFAULT_RUN_DIR,
) -> WireGuardDevice:
    """The backend for `mode` (auto | kernel | userspace). Raises UnsupportedError when none works."""
    if mode not in MODES:
        raise ConfigError(f"WireGuard mode {mode!r}: expected one of {', '.join(MODES)}")
    reasons = []
    if mode in ("auto", "kernel"):
        kernel = await probe_kernel_wireguard(netns)
        if kernel.available:
            log.info("WireGuard backend: kernel (%s)", kernel.reason)
            return KernelWireGuard(name, private_key, netns)
        reasons.append(kernel.reason)
    if mode in ("auto", "userspace"):
        user = probe_wireguard_go()
        if user.available:
            log.info("WireGuard backend: wireguard-go (%s)", user.reason)
            return WireGuardGo(name, private_key, netns, run_dir=run_dir)
        reasons.append(user.reason)
    raise UnsupportedError(f"no WireGuard backend for mode {mode!r}: " + "; ".join(reasons))
