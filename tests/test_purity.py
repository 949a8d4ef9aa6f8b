"""The pure core imports without any I/O-heavy library: no netlink, no Kubernetes, no metrics, no HTTP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = [
    "meshd.model",
    "meshd.state",
    "meshd.actions",
    "meshd.planner",
    "meshd.pairs",
    "meshd.conflicts",
    "meshd.diff",
    "meshd.diff_links",
    "meshd.diff_wireguard",
    "keys.values",
]
if (ROOT / "meshd" / "codec.py").exists():
    PURE.append("meshd.codec")
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


DECIDING = [
    m for m in PURE if m.startswith(("meshd.planner", "meshd.pairs", "meshd.conflicts", "meshd.diff"))
]
NO_CLOCK_NO_NETWORK = {"time", "datetime", "socket", "os", "subprocess", "asyncio", "random", "logging"}


@pytest.mark.parametrize("module", DECIDING)
def test_planner_and_diff_read_no_clock_and_touch_no_network(module: str) -> None:
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    imported: set[str] = set()
    for stmt in ast.walk(ast.parse(path.read_text())):
        if isinstance(stmt, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
            imported.add(stmt.module.split(".")[0])
    assert not imported & NO_CLOCK_NO_NETWORK
