"""The pure core imports without any I/O-heavy library: no netlink, no Kubernetes, no metrics, no HTTP."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
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


def _source(module: str) -> str:
    """A module's source, a package's from its `__init__.py`."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    return (path if path.exists() else ROOT / Path(*module.split(".")) / "__init__.py").read_text()


@pytest.mark.parametrize("module", DECIDING)
def test_core_reads_no_clock_and_touches_no_network(module: str) -> None:
    imported: set[str] = set()
    for stmt in ast.walk(ast.parse(_source(module))):
        if isinstance(stmt, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
            imported.add(stmt.module.split(".")[0])
    assert not imported & NO_CLOCK_NO_NETWORK


MUTABLE_NODES = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "discard", "add", "clear", "update"}
MUTATORS |= {"setdefault", "appendleft", "popleft", "sort", "reverse", "difference_update"}
SHARED_VALUES = {"meshd.core.interned": {"_VALUES"}}
"""A process-wide table of immutable values (one object per equal address): agents sharing it share equal
values, never a state one of them changes under another."""

# The calls a module-level name may be bound to (or built with), by the dotted name the callee stands for
# once imports are resolved. Each one is here because the core binds it today and its result cannot change.
IMMUTABLE_CALLS = {
    "frozenset",  # event reasons and operator sets: an immutable set
    "tuple",  # NOT_UNICAST, OPERATORS: an immutable sequence (its elements are checked call by call)
    "range",  # rediff's table numbers: an immutable sequence of ints
    "int",  # the integer bounds of model._SPANS
    "ipaddress.ip_network",  # model.NOT_UNICAST: IPv4Network/IPv6Network values are immutable
    "re.compile",  # the parsers' patterns: a compiled Pattern has no mutators
    "types.MappingProxyType",  # read-only tables; the dict it wraps is a literal no one else holds
    "typing.TypeVar",  # a typing marker, no data
    "operator.attrgetter",  # sort keys: a callable that holds only the attribute names it was given
    "operator.itemgetter",  # likewise, the indexes it was given
    "pathlib.Path",  # overlay.wireguard.DEFAULT_RUN_DIR: paths have no mutators
}
CORE_VALUES = {
    "meshd.core.assembly.Tables",  # NO_TABLES: the empty tables, a frozen dataclass of frozensets
    "meshd.core.transport.PairEntries",  # NO_ENTRIES: no per-pair entries, a frozen dataclass of tuples
    "meshd.core.state.DeviceNames",  # planner.DEFAULT_NAMES: three device names, frozen
    "meshd.core.rediff._Table",  # rediff.TABLES: how each table is read and keyed, frozen
    "overlay.wireguard.WireGuard",  # the transports: a frozen Named (value, kind, label) and its methods
    "vxlan.vxlan.Vxlan",
    "vxlan.ipip.Ipip",
}
"""The core's own values a module may hold: each one is checked to be a frozen dataclass whose instances
hash (no list, dict or set inside) and keep no attribute beyond their fields."""
MEMOS = {"functools.cache", "functools.lru_cache"}
"""Decorators that keep a memo on the function: on a module-level function or a method (a method's memo
lives on the class, keyed by every instance) it is one memo for the whole process. A memo in a function's
own nested function dies with the call, and `functools.cached_property` stores in each object's own
`__dict__` (per object, so it is allowed on methods; on a module-level function it is flagged)."""


def _statements(body: Sequence[ast.AST]) -> Iterator[ast.AST]:
    """The statements run at import, blocks (if, try, with) opened: not the bodies of functions or classes."""
    for stmt in body:
        yield stmt
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _statements(getattr(stmt, field, []))


def _aliases(tree: ast.Module) -> dict[str, str]:
    """What each imported name stands for: after `from re import compile as c`, `c` is `re.compile`."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {
                a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                for a in node.names
            }
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
    return names


def _qualified(expr: ast.expr, module: str, aliases: dict[str, str]) -> str:
    """The dotted name an expression stands for (a builtin, an import, or this module's own name); ""
    for anything computed (a call's result, a subscript): such a callee is on no allow-list."""
    if isinstance(expr, ast.Attribute):
        owner = _qualified(expr.value, module, aliases)
        return f"{owner}.{expr.attr}" if owner else ""
    if not isinstance(expr, ast.Name):
        return ""
    return aliases.get(expr.id) or (expr.id if hasattr(builtins, expr.id) else f"{module}.{expr.id}")


def _calls(expr: ast.AST) -> Iterator[ast.Call]:
    """The calls an expression makes when evaluated at import: a lambda's defaults, not its body (it runs
    later, per call)."""
    if isinstance(expr, ast.Call):
        yield expr
    for child in ast.iter_child_nodes(expr.args if isinstance(expr, ast.Lambda) else expr):
        yield from _calls(child)


def _bindings(tree: ast.Module) -> Iterator[tuple[list[str], ast.expr]]:
    """Each module-level assignment: the names it binds and the value it binds them to."""
    for stmt in _statements(tree.body):
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [
                n.id
                for t in targets
                for n in ast.walk(t)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            ]
            yield names, stmt.value


def _made(tree: ast.Module, module: str, allowed: set[str]) -> set[str]:
    """The module-level names bound to a value built by a call off `allowed`: an object that may keep state
    (`_MOVES = Moves()` then `_MOVES.moved(...)` is a memo, whatever its method is called)."""
    aliases = _aliases(tree)
    return {
        name
        for names, value in _bindings(tree)
        if any(_qualified(call.func, module, aliases) not in allowed for call in _calls(value))
        for name in names
    }


def _memoised(tree: ast.Module, module: str) -> set[str]:
    """The module-level functions and methods that keep a process-wide memo (see MEMOS)."""
    aliases, found = _aliases(tree), set()

    def visit(body: Sequence[ast.AST], in_class: bool) -> None:
        for stmt in _statements(body):
            if isinstance(stmt, ast.ClassDef):
                visit(stmt.body, True)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                used = {
                    _qualified(d.func if isinstance(d, ast.Call) else d, module, aliases)
                    for d in stmt.decorator_list
                }
                if used & MEMOS or (not in_class and "functools.cached_property" in used):
                    found.add(stmt.name)

    visit(tree.body, False)
    return found


def _containers(tree: ast.Module) -> set[str]:
    """The module-level names bound to a container literal (a mutable one if it is ever edited)."""
    return {name for names, value in _bindings(tree) if isinstance(value, MUTABLE_NODES) for name in names}


def _module_state(source: str, module: str = "snippet") -> set[str]:
    """The module-level state of a module: names bound to a call off the allow-list, functions keeping a
    memo, names rebound from a function (`global`), and container literals it edits (a constant table,
    only read, is no state)."""
    tree = ast.parse(source)
    names = _containers(tree)
    found = _made(tree, module, IMMUTABLE_CALLS | CORE_VALUES) | _memoised(tree, module)
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
    assert _module_state(_source(module), module) <= SHARED_VALUES.get(module, set())


def _not_frozen(value: object) -> str:
    """Why a value made by a CORE_VALUES class could change, or "" when it cannot."""
    params = getattr(type(value), "__dataclass_params__", None)
    if params is None or not (params.frozen and params.eq):  # eq: its hash is its fields', checked below
        return "no frozen dataclass"
    try:
        hash(value)
    except TypeError:
        return "holds an unhashable (mutable) field"
    extra = set(getattr(value, "__dict__", {})) - {f.name for f in dataclasses.fields(value)}  # type: ignore[arg-type]
    return f"carries {sorted(extra)} beyond its fields" if extra else ""


@pytest.mark.parametrize("module", DECIDING)
def test_the_core_values_a_module_holds_are_frozen(module: str) -> None:
    """What the allow-list says of CORE_VALUES holds of each object a module binds with one of them."""
    tree, loaded = ast.parse(_source(module)), importlib.import_module(module)
    for name in _made(tree, module, IMMUTABLE_CALLS) - _made(tree, module, IMMUTABLE_CALLS | CORE_VALUES):
        bound = getattr(loaded, name)
        for value in bound if isinstance(bound, tuple) else (bound,):  # rediff.TABLES: a tuple of them
            assert not _not_frozen(value), f"{module}.{name}: {_not_frozen(value)}"
