"""The MeshConfig-status Lease: a holder renews from its last write without reading the Lease first; when
somebody else wrote it since, the renewal's conflict sends it back to reading, and it follows.
The API here is an in-memory fake with the API server's optimistic concurrency (resourceVersion, 409)
so that the requests can be counted; tests/test_status_realapi_netns.py runs the Lease against the real
API server, takeover included."""

from __future__ import annotations

import copy
from typing import Any, cast

from meshd.datastore.k8s_api import KubeApi, api_error
from meshd.datastore.lease import Lease


class MemoryLeaseApi:
    """One Lease object: GET, POST (create) and PUT (update, refused with 409 on a stale resourceVersion)."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.version = 0
        self.calls: list[str] = []

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, content_type: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(method)
        if method == "GET":
            if self.obj is None:
                raise api_error(404, {"reason": "NotFound"})
            return copy.deepcopy(self.obj)
        assert body is not None
        if method == "PUT" and self.obj is None:
            raise api_error(404, {"reason": "NotFound"})
        if method == "POST" and self.obj is not None:
            raise api_error(409, {"reason": "AlreadyExists"})
        if method == "PUT" and body["metadata"].get("resourceVersion") != str(self.version):
            raise api_error(409, {"reason": "Conflict"})
        self.version += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.obj)


def _lease(api: MemoryLeaseApi) -> Lease:
    return Lease(cast(KubeApi, api), "kube-system")


async def test_a_holder_renews_without_reading_the_lease() -> None:
    api = MemoryLeaseApi()
    a = _lease(api)
    assert await a.hold("a", duration=15)
    api.calls.clear()
    for _ in range(3):
        assert await a.hold("a", duration=15)
    assert api.calls == ["PUT", "PUT", "PUT"]
    assert api.obj is not None and api.obj["spec"]["holderIdentity"] == "a"


async def test_a_renewal_that_conflicts_reads_the_lease_and_follows_the_new_holder() -> None:
    api = MemoryLeaseApi()
    a, b = _lease(api), _lease(api)
    assert await a.hold("a", duration=15)
    assert not await b.hold("b", duration=15)  # held and fresh
    assert api.obj is not None
    taken = copy.deepcopy(api.obj)  # as if b had seen a's lease expire and took it
    taken["spec"]["holderIdentity"] = "b"
    await api.call("PUT", "", taken)
    api.calls.clear()
    assert not await a.hold("a", duration=15)
    assert api.calls == ["PUT", "GET"]  # the stale renewal was refused; a read and stood back
    assert api.obj["spec"]["holderIdentity"] == "b"
    api.calls.clear()
    assert not await a.hold("a", duration=15)
    assert api.calls == ["GET"]  # a follower reads


async def test_a_deleted_lease_is_created_again() -> None:
    api = MemoryLeaseApi()
    a = _lease(api)
    assert await a.hold("a", duration=15)
    api.obj = None
    api.calls.clear()
    assert await a.hold("a", duration=15)
    assert api.calls == ["PUT", "GET", "POST"]
