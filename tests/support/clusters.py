"""Generated clusters of 1..12 nodes for property tests (random capabilities, labels, families, overlapping
CIDRs, CIDRs covering underlays, duplicate keys, invalid records) and random mesh configurations."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from keys.values import PublicKey
from meshd.core.model import (
    EncryptionMode,
    Endpoint,
    Fallback,
    InvalidNode,
    IPNetwork,
    LabelRequirement,
    LabelSelector,
    LocalNode,
    MeshConfig,
    Node,
    NodeRecord,
    SelectorOperator,
    Snapshot,
    Transport,
    WireGuardSettings,
)
from meshd.core.planner import plan
from meshd.core.state import DesiredState

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CIDRS: list[IPNetwork] = [
    *(ipaddress.ip_network(f"198.19.{j}.0/24") for j in range(16)),
    *(ipaddress.ip_network(f"198.19.{2 * j}.0/23") for j in range(3)),  # overlap some /24s
    *(ipaddress.ip_network(f"2001:db8:{j}::/64") for j in range(8)),
    ipaddress.ip_network("2001:db8::/60"),  # overlaps the first v6 /64s
    ipaddress.ip_network("198.18.0.0/29"),  # covers the underlays of node-00..node-06
    ipaddress.ip_network("2001:db8:ff::/125"),  # covers v6 underlays of node-00..node-06
]


@st.composite
def nodes(draw: st.DrawFn, index: int, key_pool: int) -> Node:
    name = f"node-{index:02d}"
    v6 = draw(st.booleans().map(lambda b: b and index % 3 == 0))
    underlay = ipaddress.ip_address(f"2001:db8:ff::{index + 1}" if v6 else f"198.18.0.{index + 1}")
    caps = frozenset(
        draw(
            st.one_of(
                st.just({Transport.WIREGUARD, Transport.VXLAN}),
                st.sets(st.sampled_from([Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP])),
            )
        )
    )
    has_key = Transport.WIREGUARD in caps and draw(st.integers(0, 5)) > 0
    key = PublicKey(bytes([draw(st.integers(1, key_pool))]) * 32) if has_key else None
    pool = draw(st.sampled_from([None, "x", "y"]))
    mac = draw(st.sampled_from([index, index, index, 0]))  # 0: a MAC some nodes share (cloned machines)
    return Node(
        name=name,
        underlay_ip=underlay,
        pod_cidrs=draw(pod_cidrs(index)),
        labels=(("pool", pool),) if pool else (),
        public_key=key,
        endpoint=Endpoint(underlay, 51820) if key and draw(st.integers(0, 7)) else None,
        # VXLAN-capable nodes publish a MAC (the agent publishes it with the capability)
        vxlan_mac=f"02:00:00:00:01:{mac:02x}" if Transport.VXLAN in caps else None,
        capabilities=caps,
    )


def pod_cidrs(index: int) -> st.SearchStrategy[tuple[IPNetwork, ...]]:
    """Usually the node's own /24 (and /64); sometimes CIDRs from a small shared pool, which may overlap.
    At most one per family, as in every record that decodes."""
    own4 = ipaddress.ip_network(f"198.19.{index + 32}.0/24")
    own6 = ipaddress.ip_network(f"2001:db8:{index + 32:x}::/64")
    shared = st.lists(st.sampled_from(CIDRS), min_size=1, max_size=2, unique_by=lambda n: n.version).map(
        tuple
    )
    return st.one_of(st.sampled_from([(own4,), (own4, own6), (own6,)]), st.sampled_from([(own4,)]), shared)


SELECTORS = [
    LabelSelector(),
    LabelSelector(match_labels=(("pool", "x"),)),
    LabelSelector(match_expressions=(LabelRequirement("pool", SelectorOperator.NOT_IN, frozenset({"y"})),)),
]


@st.composite
def configs(draw: st.DrawFn) -> MeshConfig:
    return MeshConfig(
        mode=draw(st.sampled_from(list(EncryptionMode))),
        node_selector=draw(st.sampled_from(SELECTORS)),
        fallback=draw(st.sampled_from([Fallback.VXLAN, Fallback.VXLAN, Fallback.IPIP, Fallback.NONE])),
        wireguard=WireGuardSettings(persistent_keepalive=draw(st.sampled_from([0, 25]))),
    )


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    invalid: tuple[InvalidNode, ...]
    config: MeshConfig
    mtu: int

    @property
    def records(self) -> tuple[NodeRecord, ...]:
        return (*self.nodes, *self.invalid)

    def local(self, n: Node) -> LocalNode:
        return LocalNode(
            n,
            underlay_mtu=self.mtu,
            wireguard_available=Transport.WIREGUARD in n.capabilities,
            ipip_available=Transport.IPIP in n.capabilities,
        )

    def plan_for(self, n: Node, records: tuple[NodeRecord, ...] | None = None) -> DesiredState:
        return plan(Snapshot.of(records or self.records, self.config), self.local(n))


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    size = draw(st.integers(1, 12))
    key_pool = 3 * size  # small enough that keys sometimes collide
    members = tuple(draw(nodes(i, key_pool)) for i in range(size))
    bad = draw(st.integers(0, 2))
    invalid = tuple(InvalidNode(f"bad-{k}", "bad-public-key", "public key is not base64") for k in range(bad))
    return Cluster(members, invalid, draw(configs()), draw(st.sampled_from([1500, 9000])))
