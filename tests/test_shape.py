"""The code's shape, as the README promises it: small production files and functions, a reconciler that only
schedules, and no reference to a document the repository does not have."""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("meshd", "keys", "overlay", "vxlan")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_RECONCILER_LINES = 150


def production_files() -> list[Path]:
    return [p for package in PRODUCTION for p in sorted((ROOT / package).rglob("*.py"))]


def function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    """(name:line, lines from `def` to its last line) of every function and method, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield f"{node.name}:{node.lineno}", node.end_lineno - node.lineno + 1


def test_the_scan_measures_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    x = 1\n\n    return x\n\nclass C:\n    async def g(self):\n        pass\n"
    )
    assert sorted(function_lengths(source)) == [("f:1", 4), ("g:7", 2)]


def test_no_production_file_is_over_300_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in production_files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


def test_no_production_function_is_over_60_lines() -> None:
    long = {
        f"{p.relative_to(ROOT)}:{name}": n
        for p in production_files()
        for name, n in function_lengths(p)
        if n > MAX_FUNCTION_LINES
    }
    assert long == {}


def test_the_reconciler_module_only_schedules() -> None:
    assert len((ROOT / "meshd" / "agent" / "reconciler.py").read_text().splitlines()) < MAX_RECONCILER_LINES


def test_every_cited_document_is_in_the_repository() -> None:
    """A file naming a Markdown document (README.md, bench/RESULTS.md, ...) names one the repository has."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    cited = set()
    for name in tracked:
        path = ROOT / name
        if path.is_file() and path.suffix not in {".png", ".gz"}:
            text = path.read_text(errors="replace")
            cited |= {(name, doc) for doc in re.findall(r"[\w./-]+\.md\b", text)}
    missing = sorted(
        (name, doc)
        for name, doc in cited
        if not (ROOT / doc).is_file() and not (ROOT / name).parent.joinpath(doc).is_file()
    )
    assert missing == [], "cited but not in the repository"
