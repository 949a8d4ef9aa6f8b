"""The after-pass freeze: what survived a pass leaves the collector's scans, and a cycle that became
garbage while frozen is freed by the periodic full collection, not before. `meshd` starts with the
collector off; every command but `run` turns it on at once, the agent after its first pass or by a
deadline."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref

import pytest

from meshd.agent.gcfreeze import collect_within, freeze_after_passes
from meshd.cli.main import build_parser, main


class _Node:
    me: object = None


async def test_a_frozen_cycle_is_freed_by_the_periodic_collection_only() -> None:
    now = [0.0]
    hook = freeze_after_passes(period=600.0, clock=lambda: now[0])
    try:
        await hook()  # the first pass: collect, freeze
        cycle = _Node()
        cycle.me = cycle
        freed: list[bool] = []
        weakref.finalize(cycle, freed.append, True)
        now[0] = 1.0
        await hook()  # a later pass: the cycle survived it and is frozen
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert freed == [], "frozen: no collection sees it"
        now[0] = 300.0
        await hook()
        assert freed == [], "not yet: the full collection comes at most every period"
        now[0] = 601.0
        await hook()
        assert freed == [True]
    finally:
        gc.unfreeze()


async def test_the_first_pass_turns_on_the_collector_meshd_run_started_without() -> None:
    gc.disable()  # as `meshd run` starts (meshd/__main__.py)
    try:
        await freeze_after_passes()()
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


async def test_the_collector_is_on_by_the_deadline_when_no_pass_completes() -> None:
    gc.disable()
    try:
        handle = collect_within(0.01)
        assert not gc.isenabled()
        await asyncio.sleep(0.05)
        assert gc.isenabled()
        handle.cancel()
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "argv",
    [["keys", "pubkey", "--key-file", "/nonexistent/meshd.key"], ["status", "--run-dir", "/nonexistent"]],
)
def test_every_command_but_run_turns_the_collector_back_on(argv: list[str]) -> None:
    gc.disable()
    try:
        assert main(argv) != 0  # nothing there to read: the command fails, the collector is on all the same
        assert gc.isenabled()
    finally:
        gc.enable()


def test_run_leaves_the_collector_to_the_agent() -> None:
    assert build_parser().parse_args(["run", "--node-name", "n1"]).collect_garbage is False
    assert build_parser().parse_args(["keys", "pubkey"]).collect_garbage is True


def test_meshd_starts_with_the_collector_off() -> None:
    probe = "import gc, meshd.__main__; print(gc.isenabled())"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
