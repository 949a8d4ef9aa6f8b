"""meshd: a WireGuard encrypted-overlay mesh manager for Kubernetes."""
