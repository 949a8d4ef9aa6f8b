"""Where lab agents read the cluster from: a file datastore directory, or a Kubernetes API server reached
from inside a lab namespace (in the tests, the fake one of tests/fakekube running in the switch namespace).

`Mesh` and `Agent` (agents.py) talk to a `Store`: it supplies the `meshd run` flags that point an agent at
it, registers and removes node records, and switches the MeshConfig mode, each the way a user would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from meshd.demo.netlab import Lab, LabNode
from meshd.demo.nshttp import request_in_ns
from meshd.fsutil import write_atomic

Obj = dict[str, Any]
NODES = "/api/v1/nodes"
MESHCONFIGS = "/apis/meshd.io/v1alpha1/meshconfigs"
MERGE_PATCH = "application/merge-patch+json"


class Store(Protocol):
    def agent_args(self, node: LabNode) -> list[str]:
        """The `meshd run` flags that point `node`'s agent at this store."""
        ...

    def register(self, node: LabNode) -> None:
        """Make `node`'s record exist before its agent starts (file: the agent registers itself)."""
        ...

    def put_node(self, obj: Obj) -> None:
        """Write a raw node record as another client would (it may be garbage)."""
        ...

    def remove(self, name: str) -> None:
        """Delete a node's record."""
        ...

    def node(self, name: str) -> Obj | None:
        """A node's record as stored now, or None."""
        ...

    def set_mode(self, mode: str, *, fallback: str = "VXLAN", generation: int | None = None) -> int:
        """Set the MeshConfig's encryption mode; returns the generation now in force."""
        ...


def node_object(node: LabNode) -> Obj:
    """`node` as a Kubernetes Node: pod CIDRs in the spec, the underlay as the InternalIP."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name},
        "spec": {"podCIDRs": [str(c) for c in node.pod_cidrs]},
        "status": {"addresses": [{"type": "InternalIP", "address": str(node.underlay)}]},
    }


def meshconfig_object(mode: str, fallback: str, generation: int | None = None) -> Obj:
    meta: Obj = {"name": "default"}
    if generation is not None:
        meta["generation"] = generation
    return {
        "apiVersion": "meshd.io/v1alpha1",
        "kind": "MeshConfig",
        "metadata": meta,
        "spec": {"encryption": {"mode": mode}, "fallback": fallback},
    }


@dataclass
class FileStore:
    """The file datastore: `root/nodes/NAME.json` and `root/meshconfig.yaml`."""

    root: Path
    generation: int = 0

    def agent_args(self, node: LabNode) -> list[str]:
        args = ["--datastore", f"file:{self.root}", "--underlay-ip", str(node.underlay)]
        for cidr in node.pod_cidrs:
            args += ["--pod-cidr", str(cidr)]
        return args

    def register(self, node: LabNode) -> None:
        """Nothing to do: in file mode the agent writes its own record from its flags."""

    def _path(self, name: str) -> Path:
        return self.root / "nodes" / f"{name}.json"

    def put_node(self, obj: Obj) -> None:
        path = self._path(obj["metadata"]["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(obj).encode())

    def remove(self, name: str) -> None:
        self._path(name).unlink()

    def node(self, name: str) -> Obj | None:
        try:
            doc: Obj = json.loads(self._path(name).read_text())
        except FileNotFoundError:
            return None
        return doc

    def set_mode(self, mode: str, *, fallback: str = "VXLAN", generation: int | None = None) -> int:
        """`generation` None: one more than the last one this store wrote."""
        self.generation = generation if generation is not None else self.generation + 1
        self.root.mkdir(parents=True, exist_ok=True)
        obj = meshconfig_object(mode, fallback, self.generation)
        write_atomic(self.root / "meshconfig.yaml", yaml.safe_dump(obj).encode())
        return self.generation


class ApiCallError(RuntimeError):
    def __init__(self, status: int, what: str, body: Any) -> None:
        super().__init__(f"{what}: HTTP {status}: {body}")
        self.status = status


def http_in_ns(
    lab: Lab, ns: str, method: str, url: str, body: str = "", *, content_type: str = "application/json"
) -> tuple[int, str]:
    """One HTTP request made from inside namespace `ns` (one of `lab`'s) by this process, no child
    process: (status, body); status 0 when unreachable."""
    return request_in_ns(ns, method, url, body, content_type=content_type)


@dataclass
class KubeStore:
    """A Kubernetes API server at `url`, called from inside lab namespace `ns`; agents use `kubeconfig`."""

    lab: Lab
    ns: str
    url: str
    kubeconfig: Path

    def agent_args(self, node: LabNode) -> list[str]:
        """Pod CIDRs and the underlay address come from the Node object, as in a real cluster."""
        return ["--datastore", "kubernetes", "--kubeconfig", str(self.kubeconfig)]

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """(status, decoded JSON answer or the raw text)."""
        data = "" if body is None else json.dumps(body)
        status, text = http_in_ns(self.lab, self.ns, method, self.url + path, data, content_type=content_type)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        """Like `request`, but anything other than 2xx raises ApiCallError."""
        status, answer = self.request(method, path, body, content_type=content_type)
        if not 200 <= status < 300:
            raise ApiCallError(status, f"{method} {path}", answer)
        return answer

    def register(self, node: LabNode) -> None:
        self.put_node(node_object(node))

    def put_node(self, obj: Obj) -> None:
        self.call("POST", NODES, obj)

    def remove(self, name: str) -> None:
        self.call("DELETE", f"{NODES}/{name}")

    def node(self, name: str) -> Obj | None:
        status, answer = self.request("GET", f"{NODES}/{name}")
        if status == 404:
            return None
        if status != 200:
            raise ApiCallError(status, f"GET node {name}", answer)
        doc: Obj = answer
        return doc

    def set_mode(self, mode: str, *, fallback: str = "VXLAN", generation: int | None = None) -> int:
        """Patch (or create) MeshConfig `default`. The API server assigns generations: `generation` must
        be None."""
        if generation is not None:
            raise ValueError("the API server assigns MeshConfig generations")
        spec = meshconfig_object(mode, fallback)["spec"]
        status, answer = self.request(
            "PATCH", f"{MESHCONFIGS}/default", {"spec": spec}, content_type=MERGE_PATCH
        )
        if status == 404:
            answer = self.call("POST", MESHCONFIGS, meshconfig_object(mode, fallback))
        elif status != 200:
            raise ApiCallError(status, "PATCH meshconfig default", answer)
        return int(answer["metadata"]["generation"])
