"""The netns lab lives in meshd.demo.netlab (the demo and benchmarks use it too); tests import it from here."""

from meshd.demo.netlab import Lab, LabNode, build_cluster, lab_cluster, pod_cidrs_for, run, underlay_address

__all__ = ["Lab", "LabNode", "build_cluster", "lab_cluster", "pod_cidrs_for", "run", "underlay_address"]
