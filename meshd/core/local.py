"""The local node as the planner sees it: our own record, key, capabilities and what the kernel told us."""

from __future__ import annotations

from dataclasses import dataclass, replace

from keys.proof import KeyProof
from keys.values import PublicKey
from meshd.core.codec import UNDERLAY_IP, encode_annotations
from meshd.core.model import Endpoint, IPAddress, IPNetwork, Labels, LocalNode, Node, Snapshot, Transport


@dataclass(frozen=True, slots=True)
class Identity:
    """Facts fixed at start-up. Flags win over our record in the datastore (file mode sets all of them)."""

    name: str
    public_key: PublicKey | None  # None: no WireGuard backend on this node
    underlay_ip: IPAddress | None = None
    pod_cidrs: tuple[IPNetwork, ...] = ()
    labels: Labels = ()
    ipip_available: bool = False
    key_proof: KeyProof | None = None  # made once at start-up from the identity seed (keys.proof)
    post_quantum: bool = False  # takes part in post-quantum PSK exchanges (meshd.pq) when enabled


def local_node(
    identity: Identity,
    snapshot: Snapshot,
    *,
    vxlan_mac: str | None,
    underlay_mtu: int,
    observed_generation: int | None,
) -> LocalNode | None:
    """Our LocalNode for this pass, or None while we lack an underlay address or pod CIDRs."""
    own = next((r for r in snapshot.nodes if isinstance(r, Node) and r.name == identity.name), None)
    underlay = identity.underlay_ip or (own.underlay_ip if own else None)
    cidrs = identity.pod_cidrs or (own.pod_cidrs if own else ())
    if underlay is None or not cidrs:
        return None
    caps = {Transport.VXLAN}
    if identity.public_key is not None:
        caps.add(Transport.WIREGUARD)
    if identity.ipip_available:
        caps.add(Transport.IPIP)
    node = Node(
        name=identity.name,
        underlay_ip=underlay,
        pod_cidrs=cidrs,
        labels=own.labels if own and not identity.labels else identity.labels,
        public_key=identity.public_key,
        endpoint=Endpoint(underlay, snapshot.config.wireguard.listen_port) if identity.public_key else None,
        vxlan_mac=vxlan_mac,
        capabilities=frozenset(caps),
        observed_generation=observed_generation,
        key_proof=identity.key_proof if identity.public_key else None,
        post_quantum=identity.post_quantum and identity.public_key is not None,
    )
    return LocalNode(
        node=node,
        underlay_mtu=underlay_mtu,
        wireguard_available=identity.public_key is not None,
        ipip_available=identity.ipip_available,
    )


def published(local: LocalNode, generation: int | None) -> Node:
    """The record we publish: our node with the generation we have fully applied."""
    return replace(local.node, observed_generation=generation)


def annotations_to_publish(
    identity: Identity, local: LocalNode, generation: int | None
) -> dict[str, str | None]:
    """Our `meshd.io/*` annotations, the key proof included (one patch). The underlay address is published only when a flag chose it: else
    status.addresses (kept current by the kubelet) is the truth, and a copy could only go stale."""
    annotations = encode_annotations(published(local, generation))
    if identity.underlay_ip is None:
        annotations[UNDERLAY_IP] = None
    return annotations
