"""fold_peers: the WireGuard device the agent computes after applying peer actions equals the device the
behavioural fake holds after the same actions, for any earlier and later cluster (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from meshd.agent.kernel_view import FOLDED
from meshd.core.diff import diff
from meshd.core.fold import fold_peers
from meshd.core.state import ObservedWireGuard
from tests.fakes import FakeDataplane
from tests.test_properties import Cluster, clusters


def _peers(device: ObservedWireGuard | None) -> dict[object, object]:
    return {p.public_key: p for p in device.peers} if device else {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), clusters())
def test_folded_peers_equal_the_device_after_the_same_actions(earlier: Cluster, later: Cluster) -> None:
    me = earlier.nodes[0]  # the same node, before and after its cluster changed
    fake = FakeDataplane()
    fake.apply(diff(earlier.plan_for(me), fake.observe()))
    before = fake.observe()
    actions = diff(later.plan_for(me, (me, *later.nodes[1:], *later.invalid)), before)
    fake.apply(actions)
    if before.wireguard is None or not all(isinstance(x, FOLDED) for x in actions):
        return  # a device-level change: the agent reads the kernel again instead of folding
    assert _peers(fold_peers(before.wireguard, actions)) == _peers(fake.observe().wireguard)
