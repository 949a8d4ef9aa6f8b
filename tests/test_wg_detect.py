"""Backend selection on this machine: no kernel WireGuard module, wireguard-go installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.values import PrivateKey
from meshd.errors import ConfigError, UnsupportedError
from overlay.detect import probe_kernel_wireguard, probe_wireguard_go, select_backend
from overlay.userspace import WireGuardGo
from tests.support.netns import Lab

pytestmark = pytest.mark.netns


@pytest.fixture
def netns() -> Iterator[str]:
    with Lab() as lab:
        yield lab.ns("det")


@pytest.fixture
async def kernel_absent(netns: str) -> None:
    if (await probe_kernel_wireguard(netns)).available:
        pytest.skip("this kernel has WireGuard: the fallback cases do not apply")


async def test_auto_picks_wireguard_go_here(netns: str, kernel_absent: None) -> None:
    backend = await select_backend("auto", name="meshd0", private_key=PrivateKey.generate(), netns=netns)
    assert isinstance(backend, WireGuardGo)
    assert backend.name == "meshd0"


async def test_userspace_mode_picks_wireguard_go(netns: str) -> None:
    backend = await select_backend("userspace", name="meshd0", private_key=PrivateKey.generate(), netns=netns)
    assert isinstance(backend, WireGuardGo)


async def test_kernel_mode_without_the_module_is_unsupported_with_the_reason(
    netns: str, kernel_absent: None
) -> None:
    with pytest.raises(UnsupportedError, match="kernel lacks wireguard"):
        await select_backend("kernel", name="meshd0", private_key=PrivateKey.generate(), netns=netns)


async def test_neither_backend_is_unsupported(
    netns: str, kernel_absent: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not probe_wireguard_go().available
    with pytest.raises(UnsupportedError, match="wireguard-go not found on PATH") as err:
        await select_backend("auto", name="meshd0", private_key=PrivateKey.generate(), netns=netns)
    assert "kernel lacks wireguard" in str(err.value)


async def test_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="'wireguard'"):
        await select_backend("wireguard", name="meshd0", private_key=PrivateKey.generate())
