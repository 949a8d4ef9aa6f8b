"""Per-pair post-quantum preshared keys (`spec.wireguard.postQuantum`).

For every encrypted pair the two agents run an ML-KEM-768 exchange inside their WireGuard tunnel (so it is
authenticated by the pair's WireGuard keys), derive a preshared key with HKDF, install it at both ends and
do it again every `pskRotationInterval`. `wire` frames the messages, `derive` computes keys (both pure),
`exchange` runs one exchange over a stream, `sockets` binds it to the tunnel, `pairs` decides which pairs
take part (pure), and `manager` schedules, installs and reports.
"""
