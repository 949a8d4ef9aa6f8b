"""When a pass's hooks and reports run against its writes and its publish: what peers wait on goes first."""

from __future__ import annotations

import pytest

from meshd.agent.reconciler import PassError
from meshd.core import actions as a
from tests.test_reconciler import MINE, FakePlane, MemoryStore, count, make, remote


async def test_after_publish_hooks_run_once_peers_were_told() -> None:
    """Work no peer waits on (the agent's one full garbage collection) runs after the publish of our key;
    the CNI config and the PSK layer's update still run before it."""
    store = MemoryStore(nodes=[MINE, remote(2)])
    seen: list[str] = []

    async def before(*_: object) -> None:
        seen.append(f"after_pass, {len(store.published)} published")

    async def after(*_: object) -> None:
        seen.append(f"after_publish, {len(store.published)} published")

    loop, _, _ = make(store, FakePlane(), after_pass=before, after_publish=after)
    await loop.reconcile_once()
    assert seen == ["after_pass, 0 published", "after_publish, 1 published"]


async def test_a_plan_is_reported_even_when_its_apply_fails() -> None:
    """The plan's figures and warnings come after the kernel writes (a node's first plan reports thousands
    of peers), and still when the writes fail: a refused kernel does not hide what was planned."""
    store = MemoryStore(nodes=[MINE, remote(2), remote(3)])
    loop, metrics, _ = make(store, FakePlane(fail_on=a.ReplaceRoute))
    with pytest.raises(PassError) as err:
        await loop.reconcile_once()
    assert err.value.phase == "apply"
    assert count(metrics, "meshd_peers", transport="wireguard") == 2
    assert [count(metrics, "meshd_peer_encrypted", peer=p) for p in ("node-b", "node-c")] == [1, 1]


async def test_a_report_that_fails_after_a_failed_apply_does_not_hide_the_apply_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from meshd.agent.report import Report

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("report broke")

    monkeypatch.setattr(Report, "planned", broken)
    loop, _, _ = make(MemoryStore(nodes=[MINE, remote(2)]), FakePlane(fail_on=a.ReplaceRoute))
    with pytest.raises(PassError) as err:
        await loop.reconcile_once()
    assert err.value.phase == "apply"
