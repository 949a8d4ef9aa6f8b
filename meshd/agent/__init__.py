"""The per-node agent: wiring, the reconcile loop, the dataplane, settings, HTTP and metrics."""
