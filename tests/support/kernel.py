"""The kernel tier (`-m kernel`): tests that need kernel WireGuard and IPIP. scripts/vm runs them in a VM
booted with Debian's kernel; on a host whose kernel has both modules they run natively. They fail, never
skip, when the kernel lacks a module: selecting them says the kernel must have it."""

from __future__ import annotations

import asyncio
import os

import pytest

from overlay.detect import probe_kernel_wireguard
from vxlan.links import ipip_supported

kernel = pytest.mark.kernel
BACKEND = [pytest.param("userspace"), pytest.param("kernel", marks=kernel)]
"""Parametrize a scenario over wireguard-go and (marked `kernel`) kernel WireGuard."""

SLOW = float(os.environ.get("MESHD_TEST_SLOW", "1"))
"""How much slower this machine starts processes than a normal host (scripts/vm-guest sets it for the
VM): tests scale their waits by it, never their assertions."""


def slow(seconds: float) -> float:
    return seconds * SLOW


async def require_kernel(ns: str) -> None:
    """Fail (never skip) unless the kernel in namespace `ns` has WireGuard and IPIP."""
    wg = await probe_kernel_wireguard(ns)
    if not wg.available:
        pytest.fail(f"{wg.reason}: run the kernel tests with scripts/vm")
    if not await ipip_supported(netns=ns):
        pytest.fail("kernel lacks ipip: run the kernel tests with scripts/vm")


def require_kernel_sync(ns: str) -> None:
    asyncio.run(require_kernel(ns))
