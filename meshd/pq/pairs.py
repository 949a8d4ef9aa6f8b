"""Which WireGuard pairs take part in PSK exchanges, and who initiates. Pure: from the snapshot, our node
and the plan. Both ends decide the same way (from facts symmetric in the pair), so they agree."""

from __future__ import annotations

from dataclasses import dataclass

from keys.values import PublicKey
from meshd.core.model import IPAddress, IPNetwork, LocalNode, Node, Snapshot, Transport
from meshd.core.state import DesiredState
from meshd.pq.derive import PairKeys

# why a WireGuard pair runs without a PSK
DISABLED = "disabled"  # MeshConfig spec.wireguard.postQuantum is Disabled
OPTED_OUT = "opted-out"  # this node runs with --post-quantum off (or without WireGuard)
PEER_NOT_TAKING_PART = "peer-not-taking-part"  # the peer does not advertise `pq` (older agent, opted out)
NO_COMMON_FAMILY = "no-common-family"  # no pod CIDR family both nodes have: no inner address to talk on


@dataclass(frozen=True, slots=True)
class PqPair:
    peer: str
    keys: PairKeys
    initiator: bool  # we initiate (our name is the lower one)
    local_addr: IPAddress  # our inner address: the network address of our pod CIDR
    peer_addr: IPAddress  # the peer's, same family

    @property
    def peer_key(self) -> PublicKey:
        return self.keys.responder_key if self.initiator else self.keys.initiator_key


@dataclass(frozen=True, slots=True)
class PqPlan:
    enabled: bool  # postQuantum Enabled in the MeshConfig
    interval: float  # seconds between PSK changes
    pairs: tuple[PqPair, ...] = ()  # pairs that exchange PSKs, by peer name
    off: tuple[tuple[str, str], ...] = ()  # WireGuard pairs without a PSK: (peer, reason)


def inner_address(cidrs: tuple[IPNetwork, ...], version: int) -> IPAddress | None:
    """The node's address on its overlay links for `version`: its pod CIDR's network address."""
    return next((c.network_address for c in cidrs if c.version == version), None)


def plan_pairs(snapshot: Snapshot, local: LocalNode, desired: DesiredState) -> PqPlan:
    wg = snapshot.config.wireguard
    me = local.node
    wireguard = {d.node for d in desired.pairs if d.transport == Transport.WIREGUARD}
    peers = {r.name: r for r in snapshot.nodes if isinstance(r, Node) and r.name in wireguard}
    pairs: list[PqPair] = []
    off: list[tuple[str, str]] = []
    for name in sorted(peers):
        found = verdict(wg.post_quantum, me, peers[name])
        if isinstance(found, PqPair):
            pairs.append(found)
        else:
            off.append((name, found))
    return PqPlan(wg.post_quantum, wg.psk_rotation_interval, tuple(pairs), tuple(off))


def verdict(enabled: bool, me: Node, peer: Node) -> PqPair | str:
    """The pair of a WireGuard peer that takes part, or why it runs without a PSK."""
    why = _blocker(enabled, me, peer)
    pair = None if why else _pair(me, peer)
    return pair if pair is not None else why or NO_COMMON_FAMILY


def _blocker(enabled: bool, me: Node, peer: Node) -> str | None:
    if not enabled:
        return DISABLED
    if not me.post_quantum or me.public_key is None:
        return OPTED_OUT
    if not peer.post_quantum or peer.public_key is None:
        return PEER_NOT_TAKING_PART
    return None


def _pair(me: Node, peer: Node) -> PqPair | None:
    for version in (4, 6):
        mine, theirs = inner_address(me.pod_cidrs, version), inner_address(peer.pod_cidrs, version)
        if mine is None or theirs is None:
            continue
        assert me.public_key is not None and peer.public_key is not None
        lower, upper = sorted((me, peer), key=lambda n: n.name)
        assert lower.public_key is not None and upper.public_key is not None
        keys = PairKeys(lower.name, upper.name, lower.public_key, upper.public_key)
        return PqPair(peer.name, keys, me.name < peer.name, mine, theirs)
    return None
