"""A realistic fake Kubernetes API server for tests (nodes and meshconfigs.meshd.io), over real HTTP."""

from tests.fakekube.server import FakeKube
from tests.fakekube.store import KINDS, ApiError, Store

__all__ = ["KINDS", "ApiError", "FakeKube", "Store"]
