"""The pure core imports without any I/O-heavy library: no netlink, no Kubernetes, no metrics, no HTTP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "meshd" / "core"


def _modules(package: Path) -> list[str]:
    """Every module of a package, found on disk: a new file in the core is checked without being listed."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# The transports' modules hold their pure half (what the planner and the diff ask) and read and build
# netlink messages without importing pyroute2; uapi encodes and parses the wireguard-go protocol.
TRANSPORTS = ["overlay.wireguard", "vxlan.vxlan", "vxlan.ipip"]
PURE = [*_modules(CORE), *TRANSPORTS, "overlay.uapi", "keys.values", "keys.proof"]
FORBIDDEN = ["pyroute2", "wgnlpy", "kubernetes", "prometheus_client", "aiohttp"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


def test_the_check_sees_a_forbidden_import() -> None:
    """The probe itself works: a module that does import one of them is caught."""
    code = f"import pyroute2, sys\nprint(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "pyroute2" in out.stdout


DECIDING = [m for m in PURE if m.startswith("meshd.core.") or m in TRANSPORTS]
NO_CLOCK_NO_NETWORK = {"time", "datetime", "socket", "os", "subprocess", "asyncio", "random", "logging"}


@pytest.mark.parametrize("module", DECIDING)
def test_core_reads_no_clock_and_touches_no_network(module: str) -> None:
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = ROOT / Path(*module.split(".")) / "__init__.py"
    imported: set[str] = set()
    for stmt in ast.walk(ast.parse(path.read_text())):
        if isinstance(stmt, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
            imported.add(stmt.module.split(".")[0])
    assert not imported & NO_CLOCK_NO_NETWORK
