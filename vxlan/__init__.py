"""The unencrypted fallback: VXLAN (and IPIP) links, FDB and neighbour entries, through netlink."""
