"""The unencrypted fallbacks, one module per transport (vxlan.py, ipip.py), and their links, FDB and
neighbour entries through netlink (links.py, neighbors.py)."""
