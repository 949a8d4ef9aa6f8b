"""Properties of diff() over generated clusters (tests/support/clusters.py): one pass brings a dataplane
(empty, from an earlier plan, or with a link set down) to the plan, guards first and last."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshd.core import actions
from meshd.core.diff import diff
from meshd.core.state import DesiredState
from tests.fakes import FakeDataplane
from tests.fakes.actual import actual_of
from tests.support.clusters import SETTINGS, Cluster, clusters


@SETTINGS
@given(clusters())
def test_diff_of_described_state_is_empty(cluster: Cluster) -> None:
    for n in cluster.nodes[:3]:
        d = cluster.plan_for(n)
        assert diff(d, actual_of(d)) == ()


def _pass(fake: FakeDataplane, desired: DesiredState) -> None:
    fake.apply(diff(desired, fake.observe()))


@SETTINGS
@given(clusters())
def test_converges_in_one_pass_from_empty(cluster: Cluster) -> None:
    n = cluster.nodes[0]
    desired = cluster.plan_for(n)
    fake = FakeDataplane()
    _pass(fake, desired)
    assert diff(desired, fake.observe()) == ()
    fake.writes = 0
    _pass(fake, desired)
    assert fake.writes == 0


@SETTINGS
@given(clusters(), clusters())
def test_converges_in_one_pass_from_an_earlier_state(earlier: Cluster, later: Cluster) -> None:
    """node-00 ran with another cluster, config and identity; one pass brings it to the new plan."""
    fake = FakeDataplane()
    _pass(fake, earlier.plan_for(earlier.nodes[0]))
    desired = later.plan_for(later.nodes[0])
    _pass(fake, desired)
    assert diff(desired, fake.observe()) == ()
    fake.writes = 0
    _pass(fake, desired)
    assert fake.writes == 0


@SETTINGS
@given(clusters(), clusters())
def test_guards_come_first_and_go_last(earlier: Cluster, later: Cluster) -> None:
    """Make-before-break around guards: every guard is added before any route changes, and removed only
    after every route change (so a fallback route is in place before its destination's guard goes)."""
    fake = FakeDataplane()
    _pass(fake, earlier.plan_for(earlier.nodes[0]))
    actions = [type(x).__name__ for x in diff(later.plan_for(later.nodes[0]), fake.observe())]
    routes = [i for i, k in enumerate(actions) if k in {"ReplaceRoute", "RemoveRoute"}]
    adds = [i for i, k in enumerate(actions) if k == "AddGuard"]
    removes = [i for i, k in enumerate(actions) if k == "RemoveGuard"]
    assert all(i < j for i in adds for j in routes)
    assert all(i > j for i in removes for j in routes)


@SETTINGS
@given(clusters(), st.sampled_from(["wireguard", "vxlan", "ipip"]))
def test_a_link_set_down_is_set_up_again_with_its_routes(cluster: Cluster, which: str) -> None:
    """Someone set one of our links down: the kernel dropped the routes through it and refuses new ones
    (ENETDOWN). One pass sets it up first, then puts the routes back."""
    n = cluster.nodes[0]
    desired = cluster.plan_for(n)
    fake = FakeDataplane()
    _pass(fake, desired)
    name = getattr(fake.names, which)
    if name not in fake.links:
        return
    fake.set_down(name)
    todo = diff(desired, fake.observe())
    ups = [i for i, x in enumerate(todo) if x == actions.SetLinkUp(name)]
    routes = [i for i, x in enumerate(todo) if isinstance(x, actions.ReplaceRoute)]
    assert ups and all(i > ups[0] for i in routes)
    fake.apply(todo)
    assert diff(desired, fake.observe()) == ()
