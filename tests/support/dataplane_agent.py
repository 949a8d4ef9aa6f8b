"""A one-shot agent side for one lab node, as its own process inside the node's namespace (like a real
agent): it converges the node's dataplane from the records it is given, prints the record the node would
publish, then waits to be killed. The test kills it and adopts what it left running.

Input, one JSON line on stdin: {"node": lab node, "key": private key base64, "run_dir": path,
"records": [Kubernetes-Node-shaped records]}. Output, one JSON line: the node's published record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from keys.values import PrivateKey
from meshd.core.codec.node import decode_node, encode_node
from meshd.core.model import Node
from meshd.demo.netlab import LabNode
from tests.support.dataplane import Cluster, member


def encode_lab_node(node: LabNode) -> dict[str, Any]:
    return {
        "index": node.index,
        "ns": node.ns,
        "pod_ns": node.pod_ns,
        "underlay": str(node.underlay),
        "pod_cidrs": [str(c) for c in node.pod_cidrs],
        "pod_ips": [str(ip) for ip in node.pod_ips],
        "wg_name": node.wg_name,
    }


def decode_lab_node(doc: dict[str, Any]) -> LabNode:
    return LabNode(
        index=doc["index"],
        ns=doc["ns"],
        pod_ns=doc["pod_ns"],
        underlay=ipaddress.ip_address(doc["underlay"]),
        pod_cidrs=tuple(ipaddress.ip_network(c) for c in doc["pod_cidrs"]),
        pod_ips=tuple(ipaddress.ip_address(ip) for ip in doc["pod_ips"]),
        wg_name=doc["wg_name"],
    )


def request(node: LabNode, key: PrivateKey, run_dir: Path, records: list[Node]) -> bytes:
    doc = {
        "node": encode_lab_node(node),
        "key": key.base64,
        "run_dir": str(run_dir),
        "records": [encode_node(r) for r in records],
    }
    return json.dumps(doc).encode() + b"\n"


async def converge(doc: dict[str, Any]) -> Node:
    node = decode_lab_node(doc["node"])
    records = [decode_node(r) for r in doc["records"]]
    assert all(isinstance(r, Node) for r in records), records
    key = PrivateKey.from_base64(doc["key"])
    async with member(node, Path(doc["run_dir"]), key, from_root=False) as m:
        cluster = Cluster([m], records={r.name: r for r in records if isinstance(r, Node)})
        await cluster.converge()
        return cluster.records[m.name]


def main() -> None:
    doc = json.loads(sys.stdin.readline())
    published = asyncio.run(converge(doc))
    print(json.dumps(encode_node(published)), flush=True)
    sys.stdin.read()  # until killed (or the test closes our stdin)


if __name__ == "__main__":
    main()
