"""WireGuard: the transport (wireguard.py), its kernel (generic netlink) and userspace (wireguard-go over
UAPI) backends with what they share (device.py), and the owned route table."""
