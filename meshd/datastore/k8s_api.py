"""The few Kubernetes API calls meshd makes (list, watch, get and merge-patch nodes; list and watch
MeshConfigs), as raw JSON dicts over aiohttp, with the credentials of kubeconfig.py.

Plain REST and not the Kubernetes client library: the generated client and its pydantic models cost an
agent tens of MB of memory for four requests, and we used none of its models, retries or Watch helper
anyway. A watch is a coroutine reading lines that can be cancelled at any `await`; the codec gets the same
raw dicts the file datastore reads, and all retry and resume policy lives in one place (k8s_watch.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from meshd.datastore.kubeconfig import Credentials, load_credentials
from meshd.errors import PermanentError, TransientError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
GROUP, VERSION, PLURAL = "meshd.io", "v1alpha1", "meshconfigs"
MESHCONFIG_NAME = "default"
MERGE_PATCH = "application/merge-patch+json"
NODES, MESHCONFIGS = "nodes", "meshconfigs"
PATHS = {NODES: "/api/v1/nodes", MESHCONFIGS: f"/apis/{GROUP}/{VERSION}/{PLURAL}"}
USER_AGENT = "meshd/0.1.0"


class ApiError(Exception):
    """A non-2xx answer from the API server (or an ERROR event on a watch stream)."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after


class TransientApiError(ApiError, TransientError):
    """429 or 5xx: worth retrying (after Retry-After when the server gave one)."""


class PermanentApiError(ApiError, PermanentError):
    """Any other 4xx: retrying the same request would fail the same way."""


class ApiUnavailable(TransientError):
    """The API server could not be reached, or dropped the connection."""


def api_error(status: int, body: Any, *, retry_after: float | None = None) -> ApiError:
    obj = body if isinstance(body, dict) else {}
    reason, message = str(obj.get("reason") or "Error"), str(obj.get("message") or "")[:300]
    cls = TransientApiError if status == 429 or status >= 500 else PermanentApiError
    return cls(status, reason, message, retry_after=retry_after)


def _nothing() -> None:
    """The default `on_open` of a watch."""


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


async def _checked(call: Any) -> aiohttp.ClientResponse:
    """Await a request; connection trouble becomes ApiUnavailable, a non-2xx answer an ApiError."""
    try:
        resp: aiohttp.ClientResponse = await call
        if resp.status < 300:
            return resp
        try:
            body = json.loads(await resp.read())
        except ValueError:
            body = None
        finally:
            resp.release()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ApiUnavailable(f"API server unreachable: {exc!r}") from exc
    raise api_error(resp.status, body, retry_after=_retry_after(resp.headers))


async def _json(call: Any) -> Obj:
    resp = await _checked(call)
    try:
        data = await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise ApiUnavailable(f"reading the API answer failed: {exc!r}") from exc
    finally:
        resp.release()
    if not isinstance(data, dict):
        raise ApiUnavailable("the API answer is not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class KubeApi:
    """Nodes (core/v1) and MeshConfigs (meshd.io/v1alpha1, cluster-scoped; only `default` matters)."""

    session: aiohttp.ClientSession
    credentials: Credentials
    request_timeout: float = 30.0

    @classmethod
    async def connect(cls, kubeconfig: Path | None, *, request_timeout: float = 30.0) -> KubeApi:
        """`kubeconfig` None: the in-cluster service account. ConfigError when it cannot be used."""
        credentials = await asyncio.to_thread(load_credentials, kubeconfig)
        connector = aiohttp.TCPConnector(ssl=credentials.tls if credentials.tls is not None else False)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        return cls(aiohttp.ClientSession(connector=connector, headers=headers), credentials, request_timeout)

    async def close(self) -> None:
        await self.session.close()

    def _call(
        self, method: str, path: str, *, timeout: float | None = None, content_type: str = "", **kwargs: Any
    ) -> Any:
        """The request, not yet awaited (for `_checked`); auth headers fresh for each request."""
        headers = self.credentials.headers()
        if content_type:
            headers["Content-Type"] = content_type
        total = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.request_timeout)
        return self.session.request(
            method, self.credentials.server + path, headers=headers, timeout=total, **kwargs
        )

    def _collection_call(self, resource: str, *, timeout: float | None = None, **params: str) -> Any:
        if resource == MESHCONFIGS:
            params["fieldSelector"] = f"metadata.name={MESHCONFIG_NAME}"
        return self._call("GET", PATHS[resource], params=params, timeout=timeout)

    async def list(self, resource: str) -> tuple[list[Obj], str]:
        """All objects and the list's resourceVersion (where a watch resumes)."""
        data = await _json(self._collection_call(resource))
        items = [o for o in data.get("items") or () if isinstance(o, dict)]
        return items, str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(
        self,
        resource: str,
        resource_version: str,
        *,
        server_timeout: int,
        on_open: Callable[[], None] = _nothing,
    ) -> AsyncIterator[Obj]:
        """Events after `resource_version` (BOOKMARKs included) until the server ends the stream.
        `on_open()` runs once the server has accepted the watch (a quiet stream yields nothing for minutes)."""
        call = self._collection_call(
            resource,
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(server_timeout),
            timeout=float(server_timeout + self.request_timeout),
        )
        resp = await _checked(call)
        on_open()
        try:
            while True:
                try:
                    line = await resp.content.readline()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise ApiUnavailable(f"watch on {resource} broke: {exc!r}") from exc
                if not line:
                    return
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("ignoring a malformed line on the %s watch", resource)
                    continue
                if isinstance(event, dict) and isinstance(event.get("object"), dict):
                    yield event
        finally:
            resp.close()

    async def get_node(self, name: str) -> Obj:
        return await _json(self._call("GET", f"{PATHS[NODES]}/{name}"))

    async def patch_node(self, name: str, body: Obj) -> Obj:
        data = json.dumps(body).encode()
        return await _json(self._call("PATCH", f"{PATHS[NODES]}/{name}", data=data, content_type=MERGE_PATCH))
