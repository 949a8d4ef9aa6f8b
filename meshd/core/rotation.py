"""Make-before-break key rotation: the protocol as pure functions of the snapshot (no I/O, no clock: `now`
is a parameter; what the devices hold, e.g. handshakes, comes in as arguments). The agent's driver
(meshd.agent.rotation) does the I/O.

A WireGuard device accepts a packet only from the peer whose allowed IPs hold its inner source, so a peer
cannot accept a node's old and new key on one device at once. During node N's rotation every pair (N, P)
therefore gets a second, independent tunnel between two *helper* links, and the pair's routes stand on it
while N's main device changes key. A route only ever moves onto a tunnel that already has a session (a
completed handshake) at both ends, started by one side only: two ends sending first at once start two
handshakes that cross, and crossed handshakes can leave both ends without a usable session for WireGuard's
5 s retry (measured: lost pings).

1. PREPARE: N writes its next key (not yet used), gives its helper a fresh throwaway key and publishes
   `key-rotation`. Each peer P adds N's helper as a peer of its own helper and acks (`key-rotation-ack`,
   with P's helper key). N adds each acked P to its helper with a persistent keepalive, whose first
   keepalive starts the handshake (N initiates; P only answers).
2. DIVERT: once every acked P's helper tunnel has a handshake newer than the rotation, N routes P's pod
   CIDRs through it (one `route replace` each) and lists those peers; each listed P routes N's pod CIDRs
   through its helper (already in session) and acks.
3. SWITCH: no traffic between N and a listed peer uses the main devices any more. N commits its next key,
   sets it on its main device and publishes it (with a new key proof) in the same patch. Each P puts N's
   new key on its main device with a persistent keepalive (P initiates), and once that entry has a
   handshake it routes N back onto it and acks; N, whose entry for P is in session by then, routes P back.
   When every listed peer acked (or the timeout passed), N clears `key-rotation`; peers remove N's helper
   peer after a grace period; helpers go away after a grace period.

Nothing ever leaves a WireGuard device, so nothing is sent in clear. One rotation at a time: a node starts
only when nobody rotates or hosts; of two nodes preparing at once, the greater name backs off. A peer that
does not answer (agent down, or no handshake) is left out after `timeout` and catches up when it is back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from keys.values import PublicKey
from meshd.core.model import Endpoint, IPNetwork, Node, Snapshot, Transport
from meshd.core.rotation_record import Helper, Phase, RotationAck, RotationRecord
from meshd.core.state import DesiredState, PeerSpec, Route

REQUEST_TIMEOUT = 120.0
"""How long `meshd keys rotate` waits for the rotation it asked for (seconds)."""
_ORDER = {Phase.PREPARE: 0, Phase.DIVERT: 1, Phase.SWITCH: 2}
KEEPALIVE = 1
"""Persistent keepalive (seconds) on the entries whose handshake we start: set on a new entry (or raised
from 0), WireGuard sends a keepalive at once, which starts the handshake."""


class Step(StrEnum):
    """What `advance` decided for our own rotation in this pass."""

    WAIT = "wait"
    DIVERT = "divert"
    SWITCH = "switch"  # commit the next key and set it on the main device now
    DONE = "done"
    ABORT = "abort"  # back off (before the switch only): discard the next key


@dataclass(frozen=True, slots=True)
class OwnRotation:
    """Our rotation in progress. `since`: when the phase began; `nodes`: the peers diverted."""

    id: str
    phase: Phase = Phase.PREPARE
    since: float = 0.0
    nodes: frozenset[str] = frozenset()

    def record(self, helper: Helper) -> RotationRecord:
        return RotationRecord(self.id, self.phase, helper, self.nodes)


@dataclass(frozen=True, slots=True)
class HelperPlan:
    """What the helper link must hold this pass, which pod CIDRs route through it, and our ack."""

    peers: tuple[PeerSpec, ...] = ()
    divert: frozenset[IPNetwork] = frozenset()
    ack: RotationAck | None = None
    hosted: str | None = None
    nudge: PublicKey | None = None  # the main device's entry for this key gets a keepalive (a handshake)


def wireguard_peers(snapshot: Snapshot, me: str) -> dict[str, Node]:
    """Peers we may have a WireGuard pair with (they publish a key and an endpoint)."""
    return {
        r.name: r
        for r in snapshot.nodes
        if isinstance(r, Node)
        and r.name != me
        and r.public_key is not None
        and r.endpoint is not None
        and Transport.WIREGUARD in r.capabilities
    }


def _acks(peers: Mapping[str, Node], me: str, rotation_id: str) -> dict[str, RotationAck]:
    return {
        n.name: n.rotation_ack
        for n in peers.values()
        if n.rotation_ack is not None and n.rotation_ack.node == me and n.rotation_ack.id == rotation_id
    }


def _reached(acks: Mapping[str, RotationAck], nodes: frozenset[str], phase: Phase) -> frozenset[str]:
    return frozenset(n for n in nodes if n in acks and _ORDER[acks[n].phase] >= _ORDER[phase])


def can_start(snapshot: Snapshot, me: str) -> bool:
    """No rotation anywhere and nobody (us included) hosting one: a new rotation may begin."""
    rotating = {r.name: r.rotation for r in snapshot.nodes if isinstance(r, Node) and r.rotation is not None}
    hosting = [
        r.name
        for r in snapshot.nodes
        if isinstance(r, Node) and r.rotation_ack is not None and r.rotation_ack.node in rotating
    ]
    return not rotating and not hosting


def must_yield(snapshot: Snapshot, me: str) -> bool:
    """Another node rotates past PREPARE, or prepares too with a smaller name: we back off."""
    return any(
        isinstance(r, Node)
        and r.name != me
        and r.rotation is not None
        and (r.rotation.phase is not Phase.PREPARE or r.name < me)
        for r in snapshot.nodes
    )


def _busy_elsewhere(peers: Mapping[str, Node], me: str) -> bool:
    """A peer hosts another node's rotation that still runs: it cannot ack ours yet (no timeout then)."""
    rotating = {n.name for n in peers.values() if n.rotation is not None}
    return any(n.rotation_ack is not None and n.rotation_ack.node in rotating - {me} for n in peers.values())


def helpers_ready(
    own: OwnRotation, snapshot: Snapshot, me: str, handshakes: Mapping[PublicKey, float | None]
) -> frozenset[str]:
    """The acked peers whose helper tunnel with ours had a handshake since our rotation began
    (`handshakes`: our helper's peers, by key, and their last handshake in the clock of `own.since`)."""
    acks = _acks(wireguard_peers(snapshot, me), me, own.id)
    shook = {k: t for k, t in handshakes.items() if t is not None and t >= own.since}
    return frozenset(n for n, a in acks.items() if a.helper.public_key in shook)


def advance(
    own: OwnRotation,
    snapshot: Snapshot,
    me: str,
    *,
    now: float,
    timeout: float,
    ready: frozenset[str] = frozenset(),
) -> tuple[OwnRotation | None, Step]:
    """The next state of our own rotation. ABORT and DONE end it (None). `ready`: the peers whose helper
    tunnel is in session (`helpers_ready`); only they are diverted."""
    peers = wireguard_peers(snapshot, me)
    acks = _acks(peers, me, own.id)
    late = now - own.since >= timeout
    if own.phase is Phase.PREPARE:
        if must_yield(snapshot, me):
            return None, Step.ABORT
        usable = frozenset(acks) & ready
        if usable >= peers.keys() or (late and not _busy_elsewhere(peers, me)):
            return replace(own, phase=Phase.DIVERT, since=now, nodes=usable), Step.DIVERT
        return own, Step.WAIT
    present = own.nodes & peers.keys()  # a peer deleted meanwhile is not waited for
    if own.phase is Phase.DIVERT:
        if _reached(acks, present, Phase.DIVERT) >= present or late:
            return replace(own, phase=Phase.SWITCH, since=now), Step.SWITCH
        return own, Step.WAIT
    if _reached(acks, present, Phase.SWITCH) >= present or late:
        return None, Step.DONE
    return own, Step.WAIT


def plan_own(own: OwnRotation, snapshot: Snapshot, me: str) -> HelperPlan:
    """Our helper's peers (every peer that acked, with its helper) and the pod CIDRs routed through it."""
    peers = wireguard_peers(snapshot, me)
    acks = _acks(peers, me, own.id)
    specs = tuple(_helper_peer(peers[n], a.helper, KEEPALIVE) for n, a in sorted(acks.items()))
    diverted = own.nodes & acks.keys()
    if own.phase is Phase.SWITCH:
        diverted -= _reached(acks, diverted, Phase.SWITCH)
    elif own.phase is Phase.PREPARE:
        diverted = frozenset()
    cidrs = frozenset(c for n in diverted for c in peers[n].pod_cidrs)
    return HelperPlan(peers=specs, divert=cidrs)


def hosted(snapshot: Snapshot, me: str, current: RotationAck | None, own: OwnRotation | None) -> Node | None:
    """The peer whose rotation we host: the one we already host while it lasts, else (unless we rotate past
    PREPARE ourselves) the smallest name among peers in PREPARE (smaller than ours while we prepare)."""
    rotating = (
        {n.name: (n, n.rotation) for n in wireguard_peers(snapshot, me).values() if n.rotation is not None}
        if any(isinstance(r, Node) and r.rotation is not None for r in snapshot.nodes)
        else {}  # nobody publishes a rotation (the common case): no peer to look at
    )
    if current is not None and current.node in rotating:
        node, rec = rotating[current.node]
        if rec.id == current.id:
            return node
    if own is not None and own.phase is not Phase.PREPARE:
        return None
    candidates = sorted(
        name
        for name, (_, rec) in rotating.items()
        if rec.phase is Phase.PREPARE and (own is None or name < me)
    )
    return rotating[candidates[0]][0] if candidates else None


def plan_host(node: Node, me: str, helper: Helper, *, main_ready: bool = False) -> HelperPlan:
    """Hosting `node`'s rotation: its helper as our helper's peer (we only answer its handshake); its pod
    CIDRs through it from its DIVERT until our main device's entry for its new key is in session
    (`main_ready`: a handshake since that entry was made, which its keepalive starts)."""
    rot = node.rotation
    assert rot is not None
    phase, listed = rot.phase, me in rot.nodes
    waiting = phase is Phase.SWITCH and listed and not main_ready
    diverted = listed and (phase is Phase.DIVERT or waiting)
    return HelperPlan(
        peers=(_helper_peer(node, rot.helper, 0),),
        divert=frozenset(node.pod_cidrs) if diverted else frozenset(),
        ack=RotationAck(node.name, rot.id, Phase.DIVERT if waiting else phase, helper),
        hosted=node.name,
        nudge=node.public_key if waiting else None,
    )


def _helper_peer(node: Node, helper: Helper, keepalive: int) -> PeerSpec:
    assert node.endpoint is not None
    return PeerSpec(
        public_key=helper.public_key,
        endpoint=Endpoint(node.endpoint.host, helper.port),
        allowed_ips=frozenset(node.pod_cidrs),
        persistent_keepalive=keepalive,
        node=node.name,
    )


def ignoring(snapshot: Snapshot, names: frozenset[str]) -> Snapshot:
    """`snapshot` without the rotation records of `names` (stale: their agent stopped mid-rotation)."""
    if not names:
        return snapshot
    nodes = tuple(
        replace(n, rotation=None) if isinstance(n, Node) and n.name in names else n for n in snapshot.nodes
    )
    return replace(snapshot, nodes=nodes)


def divert_routes(
    desired: DesiredState, cidrs: frozenset[IPNetwork], *, main: str, helper: str
) -> DesiredState:
    """`desired` with the routes of `cidrs` that go through the main WireGuard device moved to the helper."""
    if not cidrs:
        return desired
    routes = frozenset(
        Route(r.dst, helper) if r.dst in cidrs and r.dev == main and r.via is None else r
        for r in desired.routes
    )
    return replace(desired, routes=routes)


def nudge(desired: DesiredState, key: PublicKey | None) -> DesiredState:
    """`desired` with a persistent keepalive of at least KEEPALIVE on the main device's peer `key`."""
    if key is None:
        return desired
    peers = tuple(
        replace(p, persistent_keepalive=max(p.persistent_keepalive, KEEPALIVE)) if p.public_key == key else p
        for p in desired.peers
    )
    return replace(desired, peers=peers)
