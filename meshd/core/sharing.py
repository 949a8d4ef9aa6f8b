"""Who publishes each public key and VXLAN MAC among the cluster's members, kept by ClusterIndex
(meshd.core.cluster_index) from one snapshot to the next. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshd.core.conflicts import mac_key
from meshd.core.model import Node


@dataclass(slots=True)
class Sharing:
    """Who publishes each public key and VXLAN MAC, and which are published by more than one member: the
    duplicate searches look only at those members (their verdicts depend on nothing else)."""

    keys: dict[object, frozenset[str]] = field(default_factory=dict)
    macs: dict[object, frozenset[str]] = field(default_factory=dict)
    shared_keys: set[object] = field(default_factory=set)
    shared_macs: set[object] = field(default_factory=set)

    def copy(self) -> Sharing:
        return Sharing(dict(self.keys), dict(self.macs), set(self.shared_keys), set(self.shared_macs))

    def join(self, node: Node) -> None:
        _add(self.keys, self.shared_keys, node.public_key, node.name)
        _add(self.macs, self.shared_macs, mac_key(node), node.name)

    def leave(self, node: Node) -> None:
        _drop(self.keys, self.shared_keys, node.public_key, node.name)
        _drop(self.macs, self.shared_macs, mac_key(node), node.name)

    def key_sharers(self, members: Mapping[str, Node]) -> tuple[Node, ...]:
        return tuple(members[n] for k in self.shared_keys for n in self.keys[k])

    def mac_sharers(self, members: Mapping[str, Node]) -> tuple[Node, ...]:
        return tuple(members[n] for m in self.shared_macs for n in self.macs[m])


def _add(owners: dict[object, frozenset[str]], shared: set[object], value: object, name: str) -> None:
    if value is None:
        return
    owners[value] = held = owners.get(value, frozenset()) | {name}
    if len(held) > 1:
        shared.add(value)


def _drop(owners: dict[object, frozenset[str]], shared: set[object], value: object, name: str) -> None:
    if value is None:
        return
    held = owners.get(value, frozenset()) - {name}
    if held:
        owners[value] = held
    else:
        owners.pop(value, None)
    if len(held) < 2:
        shared.discard(value)
