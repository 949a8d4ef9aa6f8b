"""The API client honours the environment's proxy (HTTP(S)_PROXY, NO_PROXY), looked up once at connect:
requests go through the proxy it names, and straight to the server when NO_PROXY covers it. The proxy
here is a small aiohttp server answering an empty node list; the API server is the fake one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from meshd.datastore.k8s_api import KubeApi, environment_proxy
from tests.fakekube import FakeKube


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A proxy's URL and the request targets it saw (absolute URLs, as a client sends a proxy)."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.json_response({"items": [], "metadata": {"resourceVersion": "7"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def _list_nodes(kube: FakeKube, tmp_path: Path) -> list[str]:
    api = await KubeApi.connect(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        items, _ = await api.list("nodes")
    finally:
        await api.close()
    return [item["metadata"]["name"] for item in items]


async def test_requests_go_through_the_environments_proxy(
    kube: FakeKube, proxy: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.put("nodes", {"metadata": {"name": "node1"}})
    url, seen = proxy
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", url)
    assert await _list_nodes(kube, tmp_path) == []  # the proxy's answer, not the server's
    assert seen == [f"{kube.url}/api/v1/nodes"]


async def test_no_proxy_and_no_setting_go_straight_to_the_server(
    kube: FakeKube, proxy: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.put("nodes", {"metadata": {"name": "node1"}})
    url, seen = proxy
    _clear_proxies(monkeypatch)
    assert await _list_nodes(kube, tmp_path) == ["node1"]
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert await _list_nodes(kube, tmp_path) == ["node1"]
    assert seen == []


def test_environment_proxy_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    assert environment_proxy("https://198.18.0.1:6443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://198.18.0.9:3128")
    assert environment_proxy("https://198.18.0.1:6443") == "http://198.18.0.9:3128"
    assert environment_proxy("http://198.18.0.1:8080") is None
    monkeypatch.setenv("NO_PROXY", "198.18.0.1")
    assert environment_proxy("https://198.18.0.1:6443") is None
