"""The domain model: frozen values for nodes, the mesh configuration, and the kernel state we want.

Pure: no I/O, no clock, no DNS; importable without pyroute2, kubernetes or prometheus_client.
Raw dicts and strings from the API or from pyroute2 stop at the adapter that read them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from keys.proof import KeyProof
from keys.values import PublicKey
from meshd.core.interned import interned, parse_ipv4
from meshd.core.rotation_record import RotationAck, RotationRecord

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Labels = tuple[tuple[str, str], ...]


class Transport(StrEnum):
    """How traffic between one pair of nodes travels. NONE: no pod route at all (Required mode)."""

    WIREGUARD = "wireguard"
    VXLAN = "vxlan"
    IPIP = "ipip"
    NONE = "none"


class EncryptionMode(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    REQUIRED = "Required"


class Fallback(StrEnum):
    VXLAN = "VXLAN"
    IPIP = "IPIP"
    NONE = "None"

    @property
    def transport(self) -> Transport:
        return {Fallback.VXLAN: Transport.VXLAN, Fallback.IPIP: Transport.IPIP}.get(self, Transport.NONE)


MIN_POD_PREFIX: Mapping[int, int] = MappingProxyType({4: 8, 6: 32})
"""The shortest prefix length a node's pod CIDR may have, per IP version: a /7 (IPv4) or a /31 (IPv6) is
far larger than any one node's pods, and a /0 would claim every destination."""

# Ranges that never hold a node's pods, underlay address or WireGuard endpoint: traffic to them never
# crosses a network between nodes (or, for 0.0.0.0/8, is not a destination at all).
# fmt: off
NOT_UNICAST: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), what) for net, what in (
        ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
        ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"),
        ("224.0.0.0/4", "multicast"), ("ff00::/8", "multicast"),
        ("255.255.255.255/32", "broadcast"),
    )
)
# fmt: on
_SPANS: Mapping[int, tuple[tuple[int, int, IPNetwork, str], ...]] = MappingProxyType(
    {
        v: tuple(
            (int(n.network_address), int(n.broadcast_address), n, what)
            for n, what in NOT_UNICAST
            if n.version == v
        )
        for v in (4, 6)
    }
)  # fmt: skip
"""NOT_UNICAST per IP version as (first, last) integers: every node's addresses are checked against it."""
_PORT = re.compile(r"[0-9]{1,5}")


def pod_cidr_problem(net: IPNetwork) -> str | None:
    """Why `net` is not a plausible unicast pod range for one node, or None when it is."""
    if net.network_address.version == 6 and net.network_address.scope_id:
        return "has an interface scope (%...)"
    shortest = MIN_POD_PREFIX[net.version]
    if net.prefixlen < shortest:
        return f"is broader than /{shortest}, too large for one node's pods"
    first, last = int(net.network_address), int(net.broadcast_address)
    for start, end, special, what in _SPANS[net.version]:
        if start <= last and first <= end:
            return f"overlaps the {what} range {special}"
    return None


def address_problem(addr: IPAddress) -> str | None:
    """Why `addr` cannot be a node's underlay address or WireGuard endpoint, or None when it can."""
    if addr.version == 6 and addr.scope_id:
        return "has an interface scope (%...), which means nothing on other nodes"
    plain = addr.ipv4_mapped if addr.version == 6 and addr.ipv4_mapped else addr
    value = int(plain)
    for start, end, _, what in _SPANS[plain.version]:
        if start <= value <= end:
            return f"is a{'n' if what[0] in 'aeiou' else ''} {what} address"
    return None


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """Where a peer's WireGuard listens: `IP:PORT`, or `[v6]:PORT`."""

    host: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 1-65535")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse `IP:PORT` or `[IPv6]:PORT`. Host names are refused: the core resolves no DNS."""
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"endpoint {text!r} is not [IPv6]:PORT")
            addr: IPAddress = ipaddress.IPv6Address(host)
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError(f"endpoint {text!r} is not IP:PORT")
            addr = parse_ipv4(host)
        if addr.version == 6 and addr.scope_id:
            raise ValueError(f"endpoint {text!r} has a scoped address")
        addr = interned(addr)
        if not _PORT.fullmatch(port):  # ASCII digits only: str.isdigit and int() accept other scripts' digits
            raise ValueError(f"endpoint {text!r} has no numeric port")
        return cls(addr, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Node:
    """A node as read from the datastore, after validation. Optional fields are absent when not published."""

    name: str
    underlay_ip: IPAddress
    pod_cidrs: tuple[IPNetwork, ...]
    labels: Labels = ()
    public_key: PublicKey | None = None
    endpoint: Endpoint | None = None
    vxlan_mac: str | None = None  # lower-case aa:bb:cc:dd:ee:ff
    capabilities: frozenset[Transport] = frozenset()
    observed_generation: int | None = None
    key_proof: KeyProof | None = None  # as published: conflicts.py checks it when the key is disputed
    rotation: RotationRecord | None = None  # its key rotation in progress (meshd.core.rotation)
    rotation_ack: RotationAck | None = None  # the rotation of another node it hosts
    post_quantum: bool = False  # advertises `pq` in meshd.io/capabilities: takes part in PSK exchanges


@dataclass(frozen=True, slots=True)
class InvalidNode:
    """A node record that cannot be used as a peer, and why. Logged once, counted, never fatal."""

    name: str
    reason: str  # short machine-friendly label for the metric, e.g. "bad-public-key"
    detail: str  # one human sentence


NodeRecord = Node | InvalidNode


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One `matchExpressions` entry. The operator is validated when the value is built (a plain string
    naming an operator is converted; anything else raises ValueError), so `matches` never raises."""

    key: str
    operator: SelectorOperator
    values: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "operator", SelectorOperator(self.operator))

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case SelectorOperator.IN:
                return labels.get(self.key) in self.values
            case SelectorOperator.NOT_IN:
                return labels.get(self.key) not in self.values
            case SelectorOperator.EXISTS:
                return self.key in labels
            case SelectorOperator.DOES_NOT_EXIST:
                return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes label selector. The empty selector matches every node."""

    match_labels: Labels = ()
    match_expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Labels | Mapping[str, str]) -> bool:
        lab = dict(labels)
        return all(lab.get(k) == v for k, v in self.match_labels) and all(
            r.matches(lab) for r in self.match_expressions
        )


@dataclass(frozen=True, slots=True)
class WireGuardSettings:
    listen_port: int = 51820
    mtu: int = 0  # 0 = derive from the underlay
    persistent_keepalive: int = 0
    key_rotation_interval: float = 0.0  # seconds between scheduled key rotations; 0 = never
    post_quantum: bool = False  # postQuantum: Enabled: per-pair ML-KEM-768 preshared keys (meshd.pq)
    psk_rotation_interval: float = 120.0  # pskRotationInterval, in seconds


@dataclass(frozen=True, slots=True)
class VxlanSettings:
    vni: int = 4096
    port: int = 4789
    mtu: int = 0  # 0 = derive from the underlay


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The `MeshConfig` named `default` (or the defaults when there is none). `generation` is metadata."""

    mode: EncryptionMode = EncryptionMode.ENABLED
    node_selector: LabelSelector = field(default_factory=LabelSelector)
    fallback: Fallback = Fallback.VXLAN
    wireguard: WireGuardSettings = field(default_factory=WireGuardSettings)
    vxlan: VxlanSettings = field(default_factory=VxlanSettings)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class LocalNode:
    """What the agent knows of its own node: the record it publishes plus local facts."""

    node: Node
    underlay_mtu: int = 1500
    wireguard_available: bool = True  # a WireGuard backend (kernel or userspace) works here
    ipip_available: bool = False  # the kernel has the ipip module


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the datastore at one moment."""

    nodes: tuple[NodeRecord, ...]
    config: MeshConfig
    synced: bool  # the datastore completed its first full list: garbage collection is allowed

    @classmethod
    def of(
        cls, nodes: Iterable[NodeRecord], config: MeshConfig | None = None, *, synced: bool = True
    ) -> Snapshot:
        return cls(tuple(nodes), config or MeshConfig(), synced)
