"""The after-pass freeze: what survived a pass leaves the collector's scans, and a cycle that became
garbage while frozen is freed by the periodic full collection, not before."""

from __future__ import annotations

import gc
import weakref

from meshd.agent.gcfreeze import freeze_after_passes


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
