"""The helper link keeps a peer between two phases (hosting a peer's rotation, then our own): removed and
re-added, the peer would lose its session while its other end still sends on it (a lost packet)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from keys.values import PrivateKey
from meshd.agent.helper_link import HelperLink
from meshd.agent.rotation import RotationDriver
from meshd.core.state import PeerSpec


def driver(clock: list[float]) -> RotationDriver:
    def unused(*_: Any) -> Any:
        raise AssertionError("no device here")

    helper = HelperLink("wg-r", unused, unused)  # type: ignore[arg-type]
    return RotationDriver(
        name="a",
        key_file=Path("/nonexistent"),
        main="wg",
        helper=helper,
        rekey=unused,
        observe_main=unused,
        registry=CollectorRegistry(),
        clock=lambda: clock[0],
    )


def peer(cidr: str) -> PeerSpec:
    return PeerSpec(PrivateKey.generate().public_key(), None, frozenset({ipaddress.ip_network(cidr)}))


def test_a_peer_stays_for_grace_seconds_unless_its_addresses_moved() -> None:
    clock = [0.0]
    d = driver(clock)
    b, c = peer("198.19.2.0/24"), peer("198.19.3.0/24")
    assert d._recent.keep((b,), 0.0, d.grace) == (b,)  # hosting b's rotation
    clock[0] = 1.0
    assert d._recent.keep((c,), 1.0, d.grace) == (c, b)  # our own rotation starts: b stays a while
    b2 = peer("198.19.2.0/24")  # b's next key on the helper takes b's addresses: the old entry goes
    assert d._recent.keep((c, b2), 2.0, d.grace) == (c, b2)
    assert d._recent.keep((c,), 2.0 + d.grace, d.grace) == (c,)  # b2 unneeded for grace seconds: gone


def test_of_two_entries_for_the_same_addresses_only_the_newest_stays_and_a_dropped_one_never_returns() -> (
    None
):
    """A node's helper key changes with each of its rotations: hosting two rotations of b in a row leaves
    two entries for b's pod CIDR. Both kept, they would take the addresses from each other on every pass;
    the older one, once dropped, must not come back when a rotation of c no longer covers b's addresses."""
    clock = [0.0]
    d = driver(clock)
    b1, b2, c = peer("198.19.2.0/24"), peer("198.19.2.0/24"), peer("198.19.3.0/24")
    assert d._recent.keep((b1,), 0.0, d.grace) == (b1,)  # hosting b's first rotation
    assert d._recent.keep((b2,), 1.0, d.grace) == (b2,)  # b's next rotation, a new helper key: b1 goes
    assert d._recent.keep((c,), 1.5, d.grace) == (c, b2)  # hosting c: b2 stays a while, b1 does not return
    assert d._recent.keep((c,), 1.0 + d.grace, d.grace) == (c,)
