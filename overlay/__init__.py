"""WireGuard: the transport (wireguard.py), its kernel (generic netlink) and userspace (wireguard-go over
UAPI) backends, and the owned route table."""
