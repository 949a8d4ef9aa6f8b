"""The real kube-apiserver of scripts/apiserver, seen from the tests: kubectl (the venv's, matching the
server's minor version) run inside the API server's namespace, lab attachment over a veth, and a `Store`
that enrols agents the way the DaemonSet runs them (a Pod bound to the node, a TokenRequest token)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshd.demo.netlab import Lab
from meshd.demo.nshttp import request_in_ns
from meshd.demo.stores import Obj, meshconfig_object
from tests.realapi.procs import State, probe
from tests.realapi.server import ETCD_URL, start_apiserver

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
UNDERLAY = "198.18.0.0/24"


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@dataclass
class RealApi:
    """One `scripts/apiserver up DIR`: its namespace, address and admin kubeconfig."""

    dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def up(cls, directory: Path, *options: str) -> RealApi:
        res = subprocess.run(
            [str(REPO / "scripts" / "apiserver"), "up", str(directory), *options],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(
                f"scripts/apiserver up failed ({res.returncode}): {res.stderr.strip()[-2000:]}"
            )
        env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        return cls(directory, env)

    def down(self) -> None:
        res = subprocess.run([str(REPO / "scripts" / "apiserver"), "down", str(self.dir)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert res.returncode == 0, f"scripts/apiserver down failed: {res.stderr.strip()}"

    @property
    def netns(self) -> str:
        return self.env["NETNS"]

    @property
    def server(self) -> str:
        return self.env["SERVER"]

    @property
    def admin(self) -> Path:
        return Path(self.env["KUBECONFIG"])

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` from inside the API server's namespace (cluster-admin unless `kubeconfig`)."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            str(KUBECTL),
            "--kubeconfig",
            str(kubeconfig or self.admin),
        ]
        res = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def attach(self, lab: Lab, switch: str) -> None:
        """Plug the API server's namespace into the lab's underlay bridge (removed with the lab's switch)."""
        mine = f"a{lab.token}"
        subprocess.run(["ip", "-n", self.netns, "link", "add", mine, "type", "veth", "peer", "name", "api",
                        "netns", switch], check=True)  # fmt: skip
        lab.ip(switch, "link", "set", "api", "master", "br0")
        lab.ip(switch, "link", "set", "api", "up")
        subprocess.run(["ip", "-n", self.netns, "link", "set", mine, "up"], check=True)
        subprocess.run(["ip", "-n", self.netns, "route", "replace", UNDERLAY, "dev", mine], check=True)

    def stop_apiserver(self) -> None:
        State.load(self.dir).stop("kube-apiserver")

    def start_apiserver(self) -> None:
        """Start kube-apiserver again (as `up` did) unless it runs; returns once /readyz says ok."""
        state = State.load(self.dir)
        if not state.running("kube-apiserver"):
            start_apiserver(state)

    def etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to etcd's v3 JSON gateway from inside the namespace (127.0.0.1 there)."""
        status, text = request_in_ns(self.netns, "POST", ETCD_URL + path, json.dumps(body))
        if status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {status}: {text[:200]}")
        doc: dict[str, Any] = json.loads(text)
        return doc

    def bump_and_compact(self, writes: int = 5) -> int:
        """Write keys outside the API server's /registry prefix, then compact etcd to the newest revision:
        every resourceVersion handed out before is gone. Returns that revision."""
        revision = 0
        for i in range(writes):
            doc = self.etcd(
                "/v3/kv/put", {"key": _b64(f"/meshd-test/bump{i}"), "value": _b64(str(time.time()))}
            )
            revision = int(doc["header"]["revision"])
        self.etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def requests(self, verb: str, resource: str, subresource: str = "") -> int:
        """How many requests the API server has answered for VERB on RESOURCE (its own /metrics)."""
        total = 0.0
        for line in self.kubectl("get", "--raw", "/metrics").stdout.splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
                if (labels.get("verb"), labels.get("resource"), labels.get("subresource", "")) == (
                    verb, resource, subresource,
                ):  # fmt: skip
                    total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def readyz(self) -> tuple[int, str]:
        ca = self.env["CA"]
        return probe(self.netns, f"{self.server}/readyz", ca=ca)


def token_kubeconfig(path: Path, server: str, ca: Path, token: str) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "meshd",
        "clusters": [{"name": "meshd-test", "cluster": {"server": server,
                                                        "certificate-authority-data": _b64(ca.read_bytes())}}],
        "users": [{"name": "meshd", "user": {"token": token}}],
        "contexts": [{"name": "meshd", "context": {"cluster": "meshd-test", "user": "meshd"}}],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return doc


@dataclass
class RealStore:
    """The real API server as the agents' datastore. Nodes are created by the admin (as a kubelet registers
    its node); each agent runs with a token of ServiceAccount kube-system/meshd bound to a Pod on its node."""

    api: RealApi
    workdir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def kubeconfig(self, name: str) -> Path:
        return self.workdir / "kubeconfigs" / f"{name}.kubeconfig"

    def agent_args(self, node: Any) -> list[str]:
        return ["--datastore", "kubernetes", "--kubeconfig", str(self.kubeconfig(node.name))]

    def register(self, node: Any) -> None:
        from meshd.demo.stores import node_object

        self.put_node(node_object(node))
        self.enrol(node.name)

    def enrol(self, name: str) -> str:
        """A Pod of the DaemonSet's ServiceAccount bound to node `name`, and a token bound to that Pod."""
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"meshd-{name}", "namespace": "kube-system", "labels": {"meshd-test": "agent"}},
            "spec": {"nodeName": name, "serviceAccountName": "meshd",
                     "containers": [{"name": "meshd", "image": "ghcr.io/meshd/meshd:test"}]},
        }  # fmt: skip
        self.api.kubectl("create", "-f", "-", stdin=json.dumps(pod))
        token = self.api.kubectl(
            "create", "token", "meshd", "-n", "kube-system", "--duration", "2h",
            "--bound-object-kind", "Pod", "--bound-object-name", f"meshd-{name}",
        ).stdout.strip()  # fmt: skip
        self.tokens[name] = token
        token_kubeconfig(self.kubeconfig(name), self.api.server, Path(self.api.env["CA"]), token)
        return token

    def put_node(self, obj: Obj) -> None:
        """Create the Node, then report its addresses through the status subresource, like a kubelet."""
        self.api.kubectl(
            "create", "-f", "-", stdin=json.dumps({k: v for k, v in obj.items() if k != "status"})
        )
        if "status" in obj:
            patch = json.dumps({"status": obj["status"]})
            name = obj["metadata"]["name"]
            self.api.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", patch)

    def remove(self, name: str) -> None:
        self.api.kubectl("delete", "node", name)
        # the garbage collector's part (no kube-controller-manager here): its MeshNode goes with it
        self.api.kubectl("delete", "meshnode", name, "--ignore-not-found", "--wait=false")

    def node(self, name: str) -> Obj | None:
        res = self.api.kubectl("get", "node", name, "-o", "json", check=False)
        if res.returncode != 0:
            if "NotFound" in res.stderr:
                return None
            raise RuntimeError(res.stderr.strip())
        doc: Obj = json.loads(res.stdout)
        return doc

    def set_mode(self, mode: str, *, fallback: str = "VXLAN", generation: int | None = None) -> int:
        if generation is not None:
            raise ValueError("the API server assigns MeshConfig generations")
        patch = json.dumps({"spec": meshconfig_object(mode, fallback)["spec"]})
        out = self.api.kubectl("patch", "meshconfig", "default", "--type=merge", "-p", patch, "-o", "json")
        return int(json.loads(out.stdout)["metadata"]["generation"])
