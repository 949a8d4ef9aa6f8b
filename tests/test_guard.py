"""Which pod CIDRs are guarded under Required, which foreign routes are violations, and the saved guards."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import pytest

from meshd.agent.guards import SavedGuards, load_saved
from meshd.core.guard import diff_guards, guard_violations
from meshd.core.model import (
    EncryptionMode,
    IPNetwork,
    LabelSelector,
    LocalNode,
    MeshConfig,
    Node,
    NodeRecord,
    Snapshot,
    Transport,
)
from meshd.core.planner import plan
from meshd.core.state import Route
from tests.planner_cases import node

X = {"pool": "x"}
ME = node(1, labels=X)
REQUIRED = MeshConfig(mode=EncryptionMode.REQUIRED)


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def guards(
    *remotes: NodeRecord, config: MeshConfig = REQUIRED, me: Node = ME, wireguard_available: bool = True
) -> set[str]:
    desired = plan(Snapshot.of(remotes, config), LocalNode(me, wireguard_available=wireguard_available))
    return {str(g) for g in desired.guards}


@pytest.mark.parametrize("mode", [EncryptionMode.ENABLED, EncryptionMode.DISABLED])
def test_no_guards_unless_required(mode: EncryptionMode) -> None:
    assert guards(node(2), node(3, with_key=False), config=MeshConfig(mode=mode)) == set()


def test_every_selected_peer_is_guarded_whatever_its_state() -> None:
    no_wg = node(3, with_key=False, caps=[Transport.VXLAN])
    assert guards(node(2), no_wg) == {"198.19.2.0/24", "198.19.3.0/24"}
    # this node without WireGuard: it guards its peers too (its pairs get no route at all)
    assert guards(node(2), no_wg, wireguard_available=False) == {"198.19.2.0/24", "198.19.3.0/24"}


def test_only_the_selected_pool_is_guarded() -> None:
    pool = MeshConfig(
        mode=EncryptionMode.REQUIRED, node_selector=LabelSelector(match_labels=(("pool", "x"),))
    )
    assert guards(node(2, labels=X), node(3, labels={"pool": "y"}), config=pool) == {"198.19.2.0/24"}
    assert guards(node(2, labels=X), config=pool, me=node(1)) == set()  # we are outside the pool


def test_a_guard_never_cuts_our_pods_or_a_tunnel() -> None:
    covers_underlay = node(2, cidrs=("198.18.0.0/24",))
    overlaps_ours = node(3, cidrs=("198.19.1.128/25",))
    assert guards(covers_underlay, overlaps_ours, node(4)) == {"198.19.4.0/24"}


def test_violations_are_foreign_routes_past_a_guard() -> None:
    guarded = frozenset({net("198.19.2.0/24"), net("2001:db8:2::/64")})
    foreign = [
        Route(net("198.19.2.0/25"), "eth0", ipaddress.ip_address("198.18.0.254")),  # more specific
        Route(net("2001:db8:2::/64"), "eth0"),  # the same destination
        Route(net("198.19.2.128/25"), ""),  # a drop route (unreachable, blackhole): no harm
        Route(net("198.19.0.0/16"), "eth0"),  # broader: the guard wins by its prefix
        Route(net("198.19.9.0/24"), "eth0"),  # not guarded
    ]
    problems = guard_violations(guarded, foreign)
    assert [p.kind for p in problems] == ["required-violation"] * 2
    assert "198.19.2.0/25 dev eth0 via 198.18.0.254" in problems[0].detail
    assert guard_violations(frozenset(), foreign) == ()


def test_guards_are_added_and_removed_by_destination() -> None:
    want, have = frozenset({net("198.19.2.0/24")}), frozenset({net("198.19.3.0/24")})
    adds, removes = diff_guards(want, have)
    assert [a.dst for a in adds] == [net("198.19.2.0/24")]
    assert [r.dst for r in removes] == [net("198.19.3.0/24")]


class Table:
    """A guard table that records, at each kernel change, what the file held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held: set[IPNetwork] = set()
        self.log: list[tuple[str, frozenset[IPNetwork]]] = []

    async def observe(self) -> frozenset[IPNetwork]:
        return frozenset(self.held)

    async def add_all(self, dsts: Sequence[IPNetwork]) -> None:
        self.log.append(("add", load_saved(self.path)))
        self.held.update(dsts)

    async def remove_all(self, dsts: Sequence[IPNetwork]) -> None:
        self.held.difference_update(dsts)
        self.log.append(("remove", frozenset()))


def test_saved_before_added_and_restored_at_start(tmp_path: Path) -> None:
    path = tmp_path / "node.guards.json"
    g = net("198.19.2.0/24")

    async def scenario() -> None:
        table = Table(path)
        saved = SavedGuards(table, path)
        await saved.add_all([g])
        assert table.log == [("add", frozenset({g}))]  # on disk before it is in the kernel
        rebooted = Table(path)  # the kernel forgot everything
        assert await SavedGuards(rebooted, path).install_saved() == 1
        assert rebooted.held == {g}
        await saved.remove_all([g])
        assert not path.exists()

    asyncio.run(scenario())


def test_a_damaged_file_restores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text("{not json")
    assert load_saved(path) == frozenset()


def test_a_file_that_cannot_be_written_never_keeps_a_guard_out(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "g.json"
    g = net("198.19.2.0/24")

    async def scenario() -> None:
        table = Table(path)
        await SavedGuards(table, path).add_all([g])
        assert table.held == {g}

    asyncio.run(scenario())


def test_a_batch_of_guards_is_on_disk_before_any_is_in_the_kernel(tmp_path: Path) -> None:
    """A node's first Required pass guards every peer at once: the file holds the whole batch before the
    kernel gets any of it, and loses them only after the kernel did."""
    path = tmp_path / "node.guards.json"
    batch = [net(f"198.19.{i}.0/24") for i in range(2, 6)]

    async def scenario() -> None:
        table = Table(path)
        saved = SavedGuards(table, path)
        await saved.add_all(batch)
        assert table.log == [("add", frozenset(batch))] and table.held == set(batch)
        await saved.remove_all(batch[:2])
        assert table.held == set(batch[2:]) and load_saved(path) == frozenset(batch[2:])

    asyncio.run(scenario())
