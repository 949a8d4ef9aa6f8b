"""Datastores: where nodes and the MeshConfig live (Kubernetes API, or a directory)."""
