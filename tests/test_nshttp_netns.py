"""HTTP from inside a lab namespace without a child process (meshd/demo/nshttp.py): the request reaches an
address that exists only in that namespace, answers with the server's status and body, and an address
nobody listens on, or a namespace that does not exist, gives status 0; the calling thread stays in its own namespace."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from meshd.demo.netlab import Lab
from meshd.demo.nshttp import request_in_ns
from tests.support.observe import eventually

pytestmark = pytest.mark.netns

ADDR = "198.18.250.1"  # assigned only inside the lab namespace: the root namespace cannot reach it


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, str]]:
    root = tmp_path_factory.mktemp("www")
    (root / "hello.txt").write_text("hello from the namespace\n")
    with Lab() as lab:
        ns = lab.ns("web")
        lab.ip(ns, "addr", "add", f"{ADDR}/32", "dev", "lo")
        lab.popen(ns, sys.executable, "-m", "http.server", "--bind", ADDR, "--directory", str(root), "8080")
        yield lab, ns


def test_a_request_made_inside_a_namespace_reaches_what_only_it_has(served: tuple[Lab, str]) -> None:
    _, ns = served
    own_netns = os.readlink("/proc/thread-self/ns/net")
    url = f"http://{ADDR}:8080/hello.txt"
    assert eventually(lambda: request_in_ns(ns, "GET", url)[0] == 200, timeout=30)
    assert request_in_ns(ns, "GET", url) == (200, "hello from the namespace\n")
    assert request_in_ns(ns, "GET", f"http://{ADDR}:8080/missing")[0] == 404
    code, reason = request_in_ns(ns, "GET", f"http://{ADDR}:8081/", timeout=2)
    assert code == 0 and "refused" in reason.lower()
    assert os.readlink("/proc/thread-self/ns/net") == own_netns, "the calling thread changed namespace"


def test_an_unknown_namespace_is_unreachable_and_says_which() -> None:
    code, reason = request_in_ns("mt-no-such-namespace", "GET", "http://127.0.0.1:1/")
    assert code == 0 and "mt-no-such-namespace" in reason
