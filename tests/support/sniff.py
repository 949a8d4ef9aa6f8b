"""Proof on the wire: an AF_PACKET socket in the lab's underlay (switch) namespace that counts what crosses
the underlay in clear.

The socket is not bound to any interface: a bridge device only sees frames addressed to itself, not the
frames it switches between its ports, so a capture on `br0` alone would miss node-to-node traffic. Clear
text is any IP packet whose outer addresses are pod addresses (198.19.0.0/16, 2001:db8:19::/48: a leak
through the default route), any VXLAN (UDP 4789) and any IPIP (IP protocol 4 or 41) packet (their inner
pod packets are readable). WireGuard data is counted separately, to show the capture saw traffic at all.

Use it with a lab whose nodes have a default route to a gateway on the underlay (`add_gateway`): a lab
node without one silently drops what a real node would send out in clear.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field

from meshd.demo.netlab import Lab, LabNode
from meshd.rtnl import in_netns

POD_NETS = (ipaddress.ip_network("198.19.0.0/16"), ipaddress.ip_network("2001:db8:19::/48"))
GATEWAY4, GATEWAY6 = "198.18.0.254", "2001:db8:18::fe"
VXLAN_PORT = 4789
_ETH_P_ALL, _SOL_PACKET, _PACKET_STATISTICS = 0x0003, 263, 6
_SAMPLES = 20


@dataclass
class Tally:
    """What one phase of a capture saw."""

    frames: int = 0
    wireguard: int = 0
    drops: int = 0  # frames the kernel dropped before we read them (a capture with drops proves nothing)
    clear: dict[str, int] = field(default_factory=lambda: {"pod": 0, "vxlan": 0, "ipip": 0})
    samples: list[str] = field(default_factory=list)

    @property
    def in_clear(self) -> int:
        return sum(self.clear.values())

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.clear.items())
        return f"{self.frames} frames, {self.wireguard} WireGuard, clear: {kinds}, drops {self.drops}" + (
            "; e.g. " + "; ".join(self.samples[:5]) if self.samples else ""
        )


def _ports(packet: bytes, offset: int) -> tuple[int, int]:
    return struct.unpack_from("!HH", packet, offset) if len(packet) >= offset + 4 else (0, 0)


def classify(frame: bytes) -> tuple[str | None, str]:
    """(kind, summary): kind is "pod", "vxlan", "ipip", "wireguard" or None (not interesting)."""
    ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
    if ethertype == 0x8100:  # one VLAN tag
        ethertype, offset = struct.unpack_from("!H", frame, 16)[0], 18
    ip = frame[offset:]
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl, proto = (ip[0] & 0x0F) * 4, ip[9]
        src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
        first_fragment = struct.unpack_from("!H", ip, 6)[0] & 0x1FFF == 0
        l4 = ihl if first_fragment else -1
    elif ethertype == 0x86DD and len(ip) >= 40:
        proto, l4 = ip[6], 40
        src, dst = ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40])
    else:
        return None, ""
    summary = f"{src} > {dst} proto {proto}"
    if any(a in net for a in (src, dst) for net in POD_NETS):
        return "pod", summary
    if proto in (4, 41):
        return "ipip", summary
    if proto == 17 and l4 >= 0:
        sport, dport = _ports(ip, l4)
        if VXLAN_PORT in (sport, dport):
            return "vxlan", f"{summary} {sport}>{dport}"
        body = ip[l4 + 8 : l4 + 12]
        if len(body) == 4 and body[0] in (1, 2, 3, 4) and body[1:] == b"\0\0\0":
            return "wireguard", summary
    return None, summary


def _open_in_netns(netns: str) -> socket.socket:
    """A packet socket created inside `netns`, from a short-lived thread (setns moves only that thread)."""
    return in_netns(netns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL)))


class Sniffer:
    """Counts clear packets on every interface of `netns` until closed. `take()` ends a phase."""

    def __init__(self, netns: str) -> None:
        self.sock = _open_in_netns(netns)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"sniff-{netns}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            kind, summary = classify(frame)
            with self._lock:
                t = self._tally
                t.frames += 1
                if kind == "wireguard":
                    t.wireguard += 1
                elif kind is not None:
                    t.clear[kind] += 1
                    if len(t.samples) < _SAMPLES:
                        t.samples.append(f"{kind} on {addr[0]}: {summary}")

    def take(self) -> Tally:
        """What was seen since the last take (after reading what the kernel already captured)."""
        deadline = time.monotonic() + 3
        pending = struct.pack("i", 0)
        while time.monotonic() < deadline:
            pending = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, pending)
            if struct.unpack("i", pending)[0] == 0:
                break
            time.sleep(0.02)
        time.sleep(0.15)  # the frame the reader holds right now
        stats = self.sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        with self._lock:
            tally, self._tally = self._tally, Tally()
        tally.drops = struct.unpack("II", stats)[1]
        return tally

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def switch_ns(lab: Lab) -> str:
    """The underlay (switch) namespace of a cluster built by `build_cluster(lab, n)`."""
    name = f"mt{lab.token}-sw"
    assert name in lab.namespaces, name
    return name


def add_gateway(lab: Lab, nodes: list[LabNode]) -> None:
    """Give the underlay a gateway address (on the bridge, which answers ARP and forwards nothing) and every
    node a default route to it, as real nodes have: what is not routed elsewhere leaves on the underlay."""
    sw = switch_ns(lab)
    v6 = any(n.underlay.version == 6 for n in nodes)
    lab.ip(
        sw,
        "addr",
        "add",
        f"{GATEWAY6}/64" if v6 else f"{GATEWAY4}/24",
        "dev",
        "br0",
        *(["nodad"] if v6 else []),
    )
    for n in nodes:
        lab.ip(n.ns, "route", "add", "default", "via", GATEWAY6 if v6 else GATEWAY4)
