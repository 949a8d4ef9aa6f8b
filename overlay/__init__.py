"""WireGuard devices: kernel (generic netlink) and userspace (wireguard-go over UAPI); routes."""
