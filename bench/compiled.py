"""Agents in the benchmarks start from bytecode, as an installed meshd does (pip compiles at install). From
a source tree under PYTHONDONTWRITEBYTECODE=1, as on these machines, each cold start would compile every
changed module of meshd again (~0.1 s and more), which no user's agent pays."""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGES = ("meshd", "keys", "overlay", "vxlan")


def compile_packages() -> None:
    root = Path(__file__).resolve().parents[1]
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=1)
