"""When a pass's hooks run against its publish: what peers wait on goes first."""

from __future__ import annotations

from tests.test_reconciler import MINE, FakePlane, MemoryStore, make, remote


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
