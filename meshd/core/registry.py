"""The transports meshd knows: Transport -> its `Encapsulation`. A new transport is one module implementing
`meshd.core.transport.Encapsulation`, one line here, and its value in `Transport` and the CRD's enum.

The order is the order of the diff's groups: WireGuard's changes first, its removals last.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from meshd.core.model import Transport
from meshd.core.transport import Encapsulation
from overlay.wireguard import WIREGUARD
from vxlan.ipip import IPIP
from vxlan.vxlan import VXLAN

TRANSPORTS: Mapping[Transport, Encapsulation] = MappingProxyType(
    {t.transport: t for t in (WIREGUARD, VXLAN, IPIP)}
)
