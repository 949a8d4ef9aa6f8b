"""pyproject's runtime dependencies are exactly the third-party distributions production code imports.

An AST scan of the production packages collects every absolute import (at any depth, lazy ones included);
importlib.metadata maps each top-level module to the installed distribution that provides it. A declared
dependency nobody imports, or an import nobody declared, fails the test by name.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("meshd", "keys", "overlay", "vxlan")


def normalize(name: str) -> str:
    """PEP 503 form: PyYAML and pyyaml, prometheus-client and prometheus_client are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_dependencies() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        requirements: list[str] = tomllib.load(f)["project"]["dependencies"]
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, f"unparseable requirement {requirement!r}"
        names.add(normalize(match.group(0)))
    return names


def imported_modules(paths: Iterable[Path]) -> Iterator[tuple[str, Path]]:
    """(top-level module, file) for each absolute import; relative imports are first-party by definition."""
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name.split(".")[0], path
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.module.split(".")[0], path


def third_party_imports() -> dict[str, set[Path]]:
    """Distribution (normalized) -> the production files importing it."""
    providers = importlib.metadata.packages_distributions()
    found: dict[str, set[Path]] = {}
    files = [p for package in PRODUCTION for p in sorted((ROOT / package).rglob("*.py"))]
    for module, path in imported_modules(files):
        if module in PRODUCTION or module in sys.stdlib_module_names or module == "__future__":
            continue
        distributions = providers.get(module)
        assert distributions, (
            f"{path.relative_to(ROOT)} imports {module!r}, which no installed distribution provides"
        )
        for distribution in distributions:
            found.setdefault(normalize(distribution), set()).add(path.relative_to(ROOT))
    return found


def test_the_scan_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import a.b\nfrom c.d import e\nfrom . import f\ndef g():\n    import h\n")
    assert sorted(m for m, _ in imported_modules([source])) == ["a", "c", "h"]


def test_every_third_party_import_is_declared() -> None:
    undeclared = {d: sorted(map(str, files)) for d, files in third_party_imports().items()}
    for name in declared_dependencies():
        undeclared.pop(name, None)
    assert undeclared == {}, "imported by production code but missing from [project] dependencies"


def test_every_declared_dependency_is_imported() -> None:
    unused = declared_dependencies() - set(third_party_imports())
    assert unused == set(), "declared in [project] dependencies but never imported by production code"


def test_the_kernel_backend_needs_no_wgnlpy() -> None:
    """pyroute2's AsyncWireGuard drives kernel WireGuard (overlay/kernel.py says why), so wgnlpy is gone."""
    assert "wgnlpy" not in declared_dependencies()
    assert "pyroute2" in third_party_imports()
