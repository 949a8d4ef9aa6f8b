"""Every kernel change is logged as one readable line: no dataclass reprs, never a private key."""

from __future__ import annotations

import ipaddress
import typing

from keys.values import PrivateKey
from meshd.agent.dataplane import describe
from meshd.core import actions as a
from meshd.core.guard import AddGuard, RemoveGuard
from meshd.core.state import FdbEntry, NeighborEntry, PeerSpec, Route, VxlanDeviceSpec, WireGuardDeviceSpec

KEY = PrivateKey.generate()
PUB = KEY.public_key()
IP = ipaddress.ip_address("198.18.0.2")
NET = ipaddress.ip_network("198.19.2.0/24")
ADDR = ipaddress.ip_interface("198.19.1.0/32")
WG = WireGuardDeviceSpec("meshd0", PUB, 51820, 1420)
VX = VxlanDeviceSpec("meshd-vxlan", 4096, 4789, IP, 1450)
NEIGH = NeighborEntry("meshd-vxlan", ipaddress.ip_address("198.19.2.0"), "02:00:00:00:00:02")
FDB = FdbEntry("02:00:00:00:00:02", IP)
EXAMPLES: list[a.Action] = [
    a.CreateWireGuardDevice(WG),
    a.ConfigureWireGuardDevice(WG),
    a.AddPeer(PeerSpec(PUB, None, frozenset({NET}), node="node-b")),
    a.UpdatePeer(PUB, allowed_ips=frozenset({NET}), node="node-b"),
    a.RemovePeer(PUB, "node-b"),
    a.CreateVxlanDevice(VX),
    a.SetLinkMtu("meshd0", 1380),
    a.SetLinkUp("meshd0"),
    a.DeleteDevice("meshd-ipip", "no longer wanted"),
    a.AddAddress("meshd0", ADDR),
    a.RemoveAddress("meshd0", ADDR),
    a.AddNeighbor(NEIGH),
    a.RemoveNeighbor(NEIGH),
    a.AddFdb("meshd-vxlan", FDB),
    a.RemoveFdb("meshd-vxlan", FDB),
    a.ReplaceRoute(Route(NET, "meshd-vxlan", ipaddress.ip_address("198.19.2.0"), onlink=True)),
    a.RemoveRoute(Route(NET, "meshd0")),
    AddGuard(NET),
    RemoveGuard(NET),
]


def test_every_action_kind_has_an_example() -> None:
    kinds = {t.__name__ for t in typing.get_args(a.Action)}
    assert kinds - {"CreateIpipDevice"} == {type(x).__name__ for x in EXAMPLES}


def test_descriptions_are_plain_lines_without_secrets() -> None:
    for action in EXAMPLES:
        line = describe(action)
        assert "\n" not in line and "Address(" not in line and "Entry(" not in line, line
        assert KEY.base64 not in line and KEY.hex not in line
