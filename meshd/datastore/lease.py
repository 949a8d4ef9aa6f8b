"""A `coordination.k8s.io/v1` Lease electing the one agent that writes the MeshConfig status.

As client-go's leader election: a holder renews `renewTime` every few seconds (from the object its last
write returned, without reading it first, as client-go's fast path); the others remember when
they last saw the record change (their own monotonic clock, so clocks need not agree) and take over with
an update guarded by the resourceVersion once it has not changed for `leaseDurationSeconds`. Two agents
racing for it: one update wins, the other gets 409 and stays a follower.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshd.datastore.k8s_api import KubeApi, PermanentApiError

LEASE_NAME = "meshd-meshconfig-status"


def micro_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Lease:
    api: KubeApi
    namespace: str
    name: str = LEASE_NAME
    held: str | None = None
    """The holder this object last wrote the lease for (None: it does not hold it)."""
    clock: Callable[[], float] = time.monotonic
    _seen: tuple[Any, ...] | None = None
    _seen_at: float = field(default=0.0)
    _mine: dict[str, Any] | None = None  # the lease as our last write left it

    async def hold(self, holder: str, *, duration: float) -> bool:
        """Take or renew the lease for `holder`; True while it holds it."""
        self.held = holder if await self._hold(holder, duration) else None
        return self.held is not None

    async def _hold(self, holder: str, duration: float) -> bool:
        mine, self._mine = self._mine, None
        if self.held == holder and mine is not None and await self._renew(mine, holder, duration):
            return True
        try:
            obj = await self.api.call("GET", self._path(self.name))
        except PermanentApiError as exc:
            if exc.status != 404:
                raise
            return await self._write(None, holder, duration)
        spec = obj.get("spec") or {}
        current = spec.get("holderIdentity") or ""
        seen = (current, spec.get("renewTime"), spec.get("leaseTransitions"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, self.clock()
        expired = self.clock() - self._seen_at > float(spec.get("leaseDurationSeconds") or duration)
        if current not in ("", holder) and not expired:
            return False
        return await self._write(obj, holder, duration)

    async def _renew(self, mine: dict[str, Any], holder: str, duration: float) -> bool:
        """Renew from our last write, unread; False when somebody changed or deleted it since (read it)."""
        try:
            return await self._write(mine, holder, duration)
        except PermanentApiError as exc:
            if exc.status != 404:
                raise
            return False

    async def release(self) -> None:
        """Give the lease up (on a clean stop) so another agent takes over without waiting it out."""
        holder, self.held = self.held, None
        obj = await self.api.call("GET", self._path(self.name))
        if (obj.get("spec") or {}).get("holderIdentity") == holder:
            obj["spec"]["holderIdentity"] = ""
            await self._put(obj)

    def _path(self, name: str = "") -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases" + (
            f"/{name}" if name else ""
        )

    async def _write(self, old: dict[str, Any] | None, holder: str, duration: float) -> bool:
        now = micro_time(time.time())
        spec = dict((old or {}).get("spec") or {})
        transitions = int(spec.get("leaseTransitions") or 0)
        if spec.get("holderIdentity") != holder:
            spec.update(acquireTime=now, leaseTransitions=transitions + (1 if old else 0))
        spec.update(holderIdentity=holder, leaseDurationSeconds=max(1, int(duration)), renewTime=now)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if old is not None:
            meta["resourceVersion"] = (old.get("metadata") or {}).get("resourceVersion")
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}
        try:
            if old is None:
                self._mine = await self.api.call("POST", self._path(), body)
            else:
                self._mine = await self._put(body)
        except PermanentApiError as exc:
            if exc.status == 409:  # another agent wrote it first
                return False
            raise
        return True

    async def _put(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.api.call("PUT", self._path(self.name), body)
