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


MUTABLE_CALLS = {"dict", "list", "set", "bytearray", "defaultdict", "OrderedDict", "Counter", "deque"}
MUTABLE_NODES = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "discard", "add", "clear", "update"}
MUTATORS |= {"setdefault", "appendleft", "popleft", "sort", "reverse", "difference_update"}
SHARED_VALUES = {"meshd.core.interned": {"_VALUES"}}
"""A process-wide table of immutable values (one object per equal address): agents sharing it share equal
values, never a state one of them changes under another."""


def _containers(tree: ast.Module) -> set[str]:
    """The module-level names bound to a mutable container."""
    names = set()
    for stmt in tree.body:
        target, value = (
            (stmt.targets[0], stmt.value) if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            else (stmt.target, stmt.value) if isinstance(stmt, ast.AnnAssign) else (None, None)
        )  # fmt: skip
        func = value.func if isinstance(value, ast.Call) else None
        called = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        )
        if isinstance(target, ast.Name) and (isinstance(value, MUTABLE_NODES) or called in MUTABLE_CALLS):
            names.add(target.id)
    return names


def _module_state(tree: ast.Module) -> set[str]:
    """The module-level names a module changes: rebound from a function (`global`), or a container it
    edits (a constant table, only read, is no state)."""
    found, names = set(), _containers(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.update(node.names)
        target = node.value if isinstance(node, ast.Subscript | ast.Attribute) else None
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            target = node.target
        if isinstance(node, ast.Attribute) and node.attr not in MUTATORS:
            target = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target = None
        if isinstance(target, ast.Name) and target.id in names:
            found.add(target.id)
    return found


@pytest.mark.parametrize("module", DECIDING)
def test_core_keeps_no_module_level_mutable_state(module: str) -> None:
    """A memo shared by every agent of a process (tests, the demo) is state one agent changes under
    another: each agent holds its own (e.g. meshd.core.moves.Moves, made by its wiring)."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = ROOT / Path(*module.split(".")) / "__init__.py"
    assert _module_state(ast.parse(path.read_text())) <= SHARED_VALUES.get(module, set())


def test_the_state_check_sees_a_module_level_memo_and_not_a_constant_table() -> None:
    memo = "_memo: dict[int, int] = {}\ndef tell(k):\n    _memo.pop(k, None)\n    _memo[k] = 1\n"
    assert _module_state(ast.parse(memo)) == {"_memo"}
    assert _module_state(ast.parse("SEEN = set()\ndef f(x):\n    SEEN.add(x)\n")) == {"SEEN"}
    assert _module_state(ast.parse("N = 0\ndef f():\n    global N\n    N += 1\n")) == {"N"}
    assert _module_state(ast.parse("UNITS = {'s': 1.0}\ndef f(u):\n    return UNITS[u]\n")) == set()
