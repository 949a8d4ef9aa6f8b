"""A WireGuard device and its peers as the dataplane asks for them (device "meshd0", peer i at 198.18.0.i)."""

from __future__ import annotations

import ipaddress

from keys.values import PrivateKey, PublicKey
from meshd.core.model import Endpoint
from meshd.core.state import PeerSpec, WireGuardDeviceSpec

NAME = "meshd0"
net = ipaddress.ip_network


def spec_for(key: PrivateKey, port: int = 51820) -> WireGuardDeviceSpec:
    return WireGuardDeviceSpec(NAME, key.public_key(), port, 1420)


def peer(i: int, *cidrs: str, keepalive: int = 0) -> PeerSpec:
    key = PublicKey(bytes([i]) * 32)
    ep = Endpoint(ipaddress.ip_address(f"198.18.0.{i}"), 51820)
    return PeerSpec(key, ep, frozenset(net(c) for c in cidrs), keepalive, node=f"node{i}")
