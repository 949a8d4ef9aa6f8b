"""Keys, endpoints and networks shared by the UAPI codec tests (requests and replies)."""

from __future__ import annotations

import ipaddress

from keys.values import PublicKey
from meshd.core.model import Endpoint

K1 = PublicKey(bytes(range(32)))
K2 = PublicKey(bytes([0xAB]) * 32)
EP4 = Endpoint(ipaddress.ip_address("198.18.0.2"), 51820)
EP6 = Endpoint(ipaddress.ip_address("2001:db8:18::2"), 51821)
N1 = ipaddress.ip_network("198.19.2.0/24")
N6 = ipaddress.ip_network("2001:db8:19:2::/64")
