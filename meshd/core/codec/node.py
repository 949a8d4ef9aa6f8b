"""Node records: Kubernetes-Node-shaped dicts <-> domain `Node` values (our `meshd.io/*` annotations and
their values: meshd.core.codec.annotations).

Pure: no I/O, no clock, no DNS. `decode_node` never raises: anything that does not parse yields an
`InvalidNode` with a short `reason` (one of `INVALID_REASONS`, usable as a metric label) and a one-line
`detail` that names the field and the problem.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from meshd.core.codec.annotations import (
    CAPABILITIES,
    ENDPOINT,
    KEY_PROOF,
    OBSERVED_GENERATION,
    PUBLIC_KEY,
    UNDERLAY_IP,
    VXLAN_MAC,
    Invalid,
    decode_capabilities,
    decode_endpoint,
    decode_generation,
    decode_key_proof,
    decode_mac,
    decode_post_quantum,
    decode_public_key,
    encode_annotations,
    string_annotation,
)
from meshd.core.codec.text import json_type, one_line, show
from meshd.core.interned import parse_address, parse_network
from meshd.core.model import (
    InvalidNode,
    IPAddress,
    IPNetwork,
    Labels,
    Node,
    NodeRecord,
    address_problem,
    pod_cidr_problem,
)
from meshd.core.rotation_record import ROTATION, ROTATION_ACK, decode_ack, decode_rotation

# The fixed set of InvalidNode reasons (metric label values). "bad-record": the record or its metadata
# is not an object at all.
# fmt: off
INVALID_REASONS = frozenset({
    "bad-record", "bad-name", "bad-labels", "bad-annotations", "no-pod-cidr", "bad-pod-cidr",
    "no-underlay-address", "bad-underlay-address", "bad-public-key", "bad-endpoint", "bad-vxlan-mac",
    "bad-capabilities", "bad-observed-generation",
})
# fmt: on

MAX_NAME = 253


def decode_node(
    obj: Mapping[str, Any], *, underlay_override: IPAddress | None = None, published_underlay: bool = True
) -> NodeRecord:
    """A Node, or an InvalidNode saying why not. Never raises, whatever `obj` holds.

    The underlay address: `underlay_override`, else the node's `meshd.io/underlay-ip` annotation (unless
    `published_underlay` is False: an agent reading its own record must not pin what it once published),
    else status.addresses."""
    name = ""
    try:
        if not isinstance(obj, Mapping):
            raise Invalid("bad-record", f"the node record is {json_type(obj)}, not an object")
        meta = {} if obj.get("metadata") is None else obj["metadata"]
        if not isinstance(meta, Mapping):
            raise Invalid("bad-record", f"metadata is {json_type(meta)}, not an object")
        name = _name(meta.get("name"))
        return _decode(name, meta, obj, underlay_override, published_underlay=published_underlay)
    except Invalid as bad:
        return InvalidNode(name, bad.reason, one_line(bad.detail))


def _name(name: object) -> str:
    if name is None:
        raise Invalid("bad-name", "metadata.name is missing")
    if not isinstance(name, str):
        raise Invalid("bad-name", f"metadata.name is {json_type(name)}, not a string")
    if not name:
        raise Invalid("bad-name", "metadata.name is empty")
    if len(name) > MAX_NAME:
        raise Invalid("bad-name", f"metadata.name is longer than {MAX_NAME} characters")
    if not name.isprintable() or any(c.isspace() for c in name):
        raise Invalid("bad-name", f"metadata.name {show(name)} contains whitespace or control characters")
    return name


def _decode(
    name: str,
    meta: Mapping[str, Any],
    obj: Mapping[str, Any],
    override: IPAddress | None,
    *,
    published_underlay: bool,
) -> Node:
    labels = _labels(meta.get("labels"))
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, Mapping):
        raise Invalid("bad-pod-cidr", f"spec is {json_type(spec)}, not an object")
    cidrs = _pod_cidrs(spec or {})
    ann = meta.get("annotations")
    if ann is None:
        ann = {}
    if not isinstance(ann, Mapping):
        raise Invalid("bad-annotations", f"metadata.annotations is {json_type(ann)}, not an object")
    published = string_annotation(ann, UNDERLAY_IP, "bad-underlay-address")
    if override is not None:
        underlay = override
    elif published is not None and published_underlay:
        underlay = _ip(published, f"annotation {UNDERLAY_IP}")
    else:
        underlay = _underlay(obj.get("status"))
    key = string_annotation(ann, PUBLIC_KEY, "bad-public-key")
    endpoint = string_annotation(ann, ENDPOINT, "bad-endpoint")
    mac = string_annotation(ann, VXLAN_MAC, "bad-vxlan-mac")
    caps = string_annotation(ann, CAPABILITIES, "bad-capabilities")
    generation = string_annotation(ann, OBSERVED_GENERATION, "bad-observed-generation")
    return Node(
        name=name,
        underlay_ip=underlay,
        pod_cidrs=cidrs,
        labels=labels,
        public_key=None if key is None else decode_public_key(key),
        endpoint=None if endpoint is None else decode_endpoint(endpoint),
        vxlan_mac=None if mac is None else decode_mac(mac),
        capabilities=decode_capabilities(caps or ""),
        observed_generation=None if generation is None else decode_generation(generation),
        key_proof=None if key is None else decode_key_proof(ann.get(KEY_PROOF)),
        rotation=decode_rotation(ann.get(ROTATION)),
        rotation_ack=decode_ack(ann.get(ROTATION_ACK)),
        post_quantum=decode_post_quantum(caps or ""),
    )


def _labels(raw: object) -> Labels:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise Invalid("bad-labels", f"metadata.labels is {json_type(raw)}, not an object")
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Invalid("bad-labels", f"metadata.labels entry {show(k)} has {json_type(v)} as value")
    return tuple(sorted(raw.items()))


def _pod_cidrs(spec: Mapping[str, Any]) -> tuple[IPNetwork, ...]:
    field, raw = "spec.podCIDRs", spec.get("podCIDRs")
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        field, single = "spec.podCIDR", spec.get("podCIDR")
        if single is None or single == "":
            raise Invalid("no-pod-cidr", "the node has no pod CIDR (spec.podCIDRs and spec.podCIDR empty)")
        raw = [single]
    if not isinstance(raw, list | tuple):
        raise Invalid("bad-pod-cidr", f"{field} is {json_type(raw)}, not a list")
    out: list[IPNetwork] = []
    for item in raw:
        net = _network(item, field)
        if net in out:
            raise Invalid("bad-pod-cidr", f"{field} lists {net} twice")
        if any(n.version == net.version for n in out):
            raise Invalid("bad-pod-cidr", f"{field} has more than one IPv{net.version} network")
        out.append(net)
    return tuple(out)


def _network(item: object, field: str) -> IPNetwork:
    if not isinstance(item, str):
        raise Invalid("bad-pod-cidr", f"{field} holds {json_type(item)}, not a CIDR string")
    if "/" not in item:
        raise Invalid("bad-pod-cidr", f"{field} entry {show(item)} has no prefix length")
    try:
        net = parse_network(item)
    except ValueError:
        pass
    else:
        problem = pod_cidr_problem(net)
        if problem is not None:
            raise Invalid("bad-pod-cidr", f"{field} entry {show(item)} {problem}")
        return net
    try:
        loose = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise Invalid("bad-pod-cidr", f"{field} entry {show(item)} is not a CIDR") from None
    raise Invalid("bad-pod-cidr", f"{field} entry {show(item)} has host bits set (the network is {loose})")


def _underlay(status: object) -> IPAddress:
    if status is not None and not isinstance(status, Mapping):
        raise Invalid("bad-underlay-address", f"status is {json_type(status)}, not an object")
    addresses = (status or {}).get("addresses")
    if addresses is None:
        raise Invalid("no-underlay-address", "the node has no status.addresses")
    if not isinstance(addresses, list | tuple):
        raise Invalid("bad-underlay-address", f"status.addresses is {json_type(addresses)}, not a list")
    for wanted in ("InternalIP", "ExternalIP"):
        for i, entry in enumerate(addresses):
            where = f"status.addresses[{i}]"
            if not isinstance(entry, Mapping):
                raise Invalid("bad-underlay-address", f"{where} is {json_type(entry)}, not an object")
            if entry.get("type") == wanted:
                return _ip(entry.get("address"), f"{where}.address ({wanted})")
    raise Invalid("no-underlay-address", "status.addresses has no InternalIP or ExternalIP entry")


def _ip(raw: object, where: str) -> IPAddress:
    if not isinstance(raw, str):
        raise Invalid("bad-underlay-address", f"{where} is {json_type(raw)}, not an IP address string")
    try:
        addr = parse_address(raw)
    except ValueError:
        raise Invalid("bad-underlay-address", f"{where} {show(raw)} is not an IP address") from None
    problem = address_problem(addr)
    if problem is not None:
        raise Invalid("bad-underlay-address", f"{where} {show(raw)} {problem}")
    return addr


def encode_node(node: Node) -> dict[str, Any]:
    """A Kubernetes-Node-shaped dict that `decode_node` reads back as the same Node (the underlay
    address goes to status.addresses, as the kubelet reports it)."""
    encoded = encode_annotations(node).items()
    annotations = {k: v for k, v in encoded if v is not None and k != UNDERLAY_IP}
    cidrs = [str(c) for c in node.pod_cidrs]
    spec: dict[str, Any] = {"podCIDRs": cidrs}
    if cidrs:
        spec["podCIDR"] = cidrs[0]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": dict(node.labels), "annotations": annotations},
        "spec": spec,
        "status": {"addresses": [{"type": "InternalIP", "address": str(node.underlay_ip)}]},
    }
