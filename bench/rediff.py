"""The kernel diff of a one-node add, whole (`diff`) against from the last diff (`rediff`), at 1000 and
5000 peers. Pure CPU, no kernel: the states come from the planner (`replan`, as the agent plans), the
kernel view holds the last plan and, after the add was applied, is folded as the agent folds it.

    python -m bench.rediff [PEERS ...]
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from keys.values import PublicKey
from meshd.core.diff import diff
from meshd.core.fold import fold_peers
from meshd.core.incremental import replan
from meshd.core.model import Endpoint, LocalNode, Node, Snapshot, Transport
from meshd.core.moves import Moves
from meshd.core.rediff import rediff
from meshd.core.state import ActualState, DesiredState, ObservedPeer, ObservedVxlan, ObservedWireGuard

ROUNDS = 20


def node(i: int) -> Node:
    """Node i: underlay 198.18.0.0/16, a /29 of 198.19.0.0/16 (up to 8192 nodes)."""
    underlay = ipaddress.IPv4Address("198.18.0.1") + i
    cidr = ipaddress.IPv4Network(f"{ipaddress.IPv4Address('198.19.0.0') + 8 * i}/29")
    return Node(
        f"n{i:05d}",
        underlay,
        (cidr,),
        public_key=PublicKey(i.to_bytes(4, "big") * 8),
        endpoint=Endpoint(underlay, 51820),
        vxlan_mac=f"02:00:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
        capabilities=frozenset({Transport.WIREGUARD, Transport.VXLAN}),
    )


def held(desired: DesiredState) -> ActualState:
    """The kernel holding `desired`, as the agent reads it."""
    wg, vx = desired.wireguard, desired.vxlan
    assert wg is not None
    peers = tuple(
        ObservedPeer(p.public_key, p.endpoint, p.allowed_ips, p.persistent_keepalive) for p in desired.peers
    )
    return ActualState(
        wireguard=ObservedWireGuard(wg.name, wg.public_key, wg.listen_port, wg.mtu, wg.addresses, peers),
        vxlan=ObservedVxlan(vx.name, vx.vni, vx.port, vx.local, vx.mtu, "02:00:00:00:00:ff", vx.addresses)
        if vx
        else None,
        fdb=desired.fdb,
        neighbors=desired.neighbors,
        routes=desired.routes,
    )


def folded(actual: ActualState, desired: DesiredState, moves: Moves) -> ActualState:
    """`actual` after the diff to `desired` was applied, as the kernel view folds it: the peers by
    `fold_peers`, the rest as the notifications add the new entries to the sets it holds."""
    assert actual.wireguard is not None
    wg = fold_peers(actual.wireguard, diff(desired, actual), moves)
    return replace(
        actual,
        wireguard=wg,
        routes=actual.routes | (desired.routes - actual.routes),
        fdb=actual.fdb | (desired.fdb - actual.fdb),
        neighbors=actual.neighbors | (desired.neighbors - actual.neighbors),
    )


def best_ms(run: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def measure(peers: int) -> None:
    cluster = [node(i) for i in range(peers + 1)]
    local, moves = LocalNode(cluster[0]), Moves()
    before = replan(None, Snapshot.of(cluster), local, moves)
    actual = held(before.state)
    last = rediff(None, before.state, actual, moves)
    after = replan(before, Snapshot.of([*cluster, node(peers + 1)]), local, moves).state
    assert rediff(last, after, actual, moves).actions == diff(after, actual)
    add = rediff(last, after, actual, moves)
    view = folded(actual, after, moves)
    assert rediff(add, after, view, moves).actions == diff(after, view) == ()
    for what, state, start in (("node added", actual, last), ("after applying it", view, add)):
        whole, cut = (
            best_ms(partial(diff, after, state)),
            best_ms(partial(rediff, start, after, state, moves)),
        )
        print(f"{peers} peers, {what}: diff {whole:.2f} ms, rediff {cut:.2f} ms ({whole / cut:.0f}x)")


if __name__ == "__main__":
    for n in map(int, sys.argv[1:] or ("1000", "5000")):
        measure(n)
