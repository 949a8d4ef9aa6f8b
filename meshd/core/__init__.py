"""The pure core: domain model, codecs, planner, pairs, conflicts, diff, state, actions, ports.
No I/O, no clock, no DNS; importable without pyroute2, kubernetes or prometheus_client."""
