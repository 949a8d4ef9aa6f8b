"""The few Kubernetes API calls meshd makes, as raw JSON dicts, on `kubernetes.aio`.

Why `kubernetes.aio` and not the sync client behind `asyncio.to_thread`: kubernetes 37 ships a real
asyncio client (aiohttp underneath), so a watch is a coroutine reading lines that can be cancelled at any
`await`; a sync watch parked in a worker thread cannot be interrupted and would pin a thread per stream.
Requests go through the client's own `ApiClient` (`param_serialize` + `call_api`, the two calls every
generated method makes, with its configuration, authentication and token refresh) with the response left
unread (`_preload_content=False`): no pydantic models, no client-side retries, no Watch helper with its
own 410 handling, so the codec gets the same raw dicts the file datastore reads, and all retry and resume
policy lives in one place (k8s_watch.py). We do not load the generated `CoreV1Api`: importing it pulls in
some 250 model modules (about 25 MB of the agent's memory) for the four node requests we make.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from meshd.datastore.bare import bare_packages
from meshd.errors import ConfigError, PermanentError, TransientError

bare_packages("kubernetes", "kubernetes.aio")  # not their __init__s: the sync client is not loaded
from kubernetes.aio import client as kclient  # noqa: E402
from kubernetes.aio import config as kconfig  # noqa: E402

log = logging.getLogger(__name__)
Obj = dict[str, Any]
GROUP, VERSION, PLURAL = "meshd.io", "v1alpha1", "meshconfigs"
MESHCONFIG_NAME = "default"
MERGE_PATCH = "application/merge-patch+json"
NODES, MESHCONFIGS, MESHNODES = "nodes", "meshconfigs", "meshnodes"
PATHS = {
    NODES: "/api/v1/nodes",
    MESHCONFIGS: f"/apis/{GROUP}/{VERSION}/{PLURAL}",
    MESHNODES: f"/apis/{GROUP}/{VERSION}/{MESHNODES}",
}


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


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY, ...) names for the API server, looked up once.
    The client's session would otherwise look it up, and parse ~/.netrc, in a thread on every request
    (`trust_env`): most of an idle agent's request cost."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


@dataclass(frozen=True, slots=True)
class KubeApi:
    """Nodes (core/v1) and MeshConfigs (meshd.io/v1alpha1, cluster-scoped; only `default` matters)."""

    api_client: kclient.ApiClient
    request_timeout: float = 30.0

    @classmethod
    async def connect(cls, kubeconfig: Path | None, *, request_timeout: float = 30.0) -> KubeApi:
        cfg = kclient.Configuration()
        try:
            if kubeconfig is None:
                kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                await kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        except (kconfig.ConfigException, OSError) as exc:
            where = kubeconfig or "in-cluster service account"
            raise ConfigError(f"cannot load Kubernetes configuration ({where}): {exc}") from exc
        cfg.retries = None  # retries are ours (tenacity), never aiohttp_retry's
        cfg.proxy = cfg.proxy or environment_proxy(cfg.host)
        cfg.client_session_kwargs = {"trust_env": False}
        return cls(kclient.ApiClient(cfg), request_timeout)

    async def close(self) -> None:
        await self.api_client.close()  # type: ignore[no-untyped-call]

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Obj | None = None,
        content_type: str | None = None,
        request_timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """One request as the generated API methods make it (Bearer token auth), the response unread."""
        headers = {"Accept": "application/json"} | ({"Content-Type": content_type} if content_type else {})
        request = await self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        answer = await self.api_client.call_api(
            *request, _request_timeout=request_timeout or self.request_timeout, _preload_content=False
        )
        response: aiohttp.ClientResponse = answer.response
        return response

    def _collection_call(
        self, resource: str, query: list[tuple[str, Any]], request_timeout: float | None = None
    ) -> Any:
        if resource == MESHCONFIGS:
            query = [*query, ("fieldSelector", f"metadata.name={MESHCONFIG_NAME}")]
        return self._send("GET", PATHS[resource], query=query, request_timeout=request_timeout)

    async def list(self, resource: str) -> tuple[list[Obj], str]:
        """All objects and the list's resourceVersion (where a watch resumes)."""
        data = await _json(self._collection_call(resource, []))
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
        query = [
            ("allowWatchBookmarks", True),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", server_timeout),
            ("watch", True),
        ]
        call = self._collection_call(resource, query, float(server_timeout + self.request_timeout))
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

    async def call(
        self, method: str, path: str, body: Obj | None = None, *, content_type: str | None = None
    ) -> Obj:
        """One request by path (for the status store, leases and Events), its JSON answer."""
        return await _json(self._send(method, path, body=body, content_type=content_type))

    async def write(self, method: str, path: str, body: Obj, *, content_type: str | None = None) -> None:
        """One write by path whose answer is not needed (the MeshNode status: its answer echoes the whole
        object, hundreds of kilobytes at 5000 peers): read, not decoded."""
        resp = await _checked(self._send(method, path, body=body, content_type=content_type))
        try:
            await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiUnavailable(f"reading the API answer failed: {exc!r}") from exc
        finally:
            resp.release()

    async def get_node(self, name: str) -> Obj:
        return await _json(self._send("GET", f"{PATHS[NODES]}/{name}"))

    async def patch_node(self, name: str, body: Obj) -> Obj:
        return await _json(self._send("PATCH", f"{PATHS[NODES]}/{name}", body=body, content_type=MERGE_PATCH))
