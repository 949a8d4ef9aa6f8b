"""Node records: Kubernetes-Node-shaped dicts <-> domain `Node` values, and our `meshd.io/*` annotations.

Pure: no I/O, no clock, no DNS. `decode_node` never raises: anything that does not parse yields an
`InvalidNode` with a short `reason` (one of `INVALID_REASONS`, usable as a metric label) and a one-line
`detail` that names the field and the problem.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from keys.values import InvalidKeyError, PublicKey
from meshd.core.codec.text import json_type, one_line, show
from meshd.core.model import (
    Endpoint,
    InvalidNode,
    IPAddress,
    IPNetwork,
    Labels,
    Node,
    NodeRecord,
    Transport,
    address_problem,
    pod_cidr_problem,
)

PREFIX = "meshd.io/"
PUBLIC_KEY = "meshd.io/public-key"
ENDPOINT = "meshd.io/endpoint"
VXLAN_MAC = "meshd.io/vxlan-mac"
CAPABILITIES = "meshd.io/capabilities"
OBSERVED_GENERATION = "meshd.io/observed-generation"
UNDERLAY_IP = "meshd.io/underlay-ip"  # wins over status.addresses: what `--underlay-ip` chose
ANNOTATIONS = (PUBLIC_KEY, ENDPOINT, VXLAN_MAC, CAPABILITIES, OBSERVED_GENERATION, UNDERLAY_IP)

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
MAX_GENERATION = 2**63 - 1
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_GENERATION = re.compile(r"[0-9]{1,19}")
_TOKENS: Mapping[str, Transport] = MappingProxyType(
    {t.value: t for t in (Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP)}
)


class _Invalid(Exception):
    """Internal: raised by the field decoders, turned into an InvalidNode by decode_node."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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
            raise _Invalid("bad-record", f"the node record is {json_type(obj)}, not an object")
        meta = {} if obj.get("metadata") is None else obj["metadata"]
        if not isinstance(meta, Mapping):
            raise _Invalid("bad-record", f"metadata is {json_type(meta)}, not an object")
        name = _name(meta.get("name"))
        return _decode(name, meta, obj, underlay_override, published_underlay=published_underlay)
    except _Invalid as bad:
        return InvalidNode(name, bad.reason, one_line(bad.detail))


def _name(name: object) -> str:
    if name is None:
        raise _Invalid("bad-name", "metadata.name is missing")
    if not isinstance(name, str):
        raise _Invalid("bad-name", f"metadata.name is {json_type(name)}, not a string")
    if not name:
        raise _Invalid("bad-name", "metadata.name is empty")
    if len(name) > MAX_NAME:
        raise _Invalid("bad-name", f"metadata.name is longer than {MAX_NAME} characters")
    if not name.isprintable() or any(c.isspace() for c in name):
        raise _Invalid("bad-name", f"metadata.name {show(name)} contains whitespace or control characters")
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
        raise _Invalid("bad-pod-cidr", f"spec is {json_type(spec)}, not an object")
    cidrs = _pod_cidrs(spec or {})
    ann = meta.get("annotations")
    if ann is None:
        ann = {}
    if not isinstance(ann, Mapping):
        raise _Invalid("bad-annotations", f"metadata.annotations is {json_type(ann)}, not an object")
    published = _annotation(ann, UNDERLAY_IP, "bad-underlay-address")
    if override is not None:
        underlay = override
    elif published is not None and published_underlay:
        underlay = _ip(published, f"annotation {UNDERLAY_IP}")
    else:
        underlay = _underlay(obj.get("status"))
    key = _annotation(ann, PUBLIC_KEY, "bad-public-key")
    endpoint = _annotation(ann, ENDPOINT, "bad-endpoint")
    mac = _annotation(ann, VXLAN_MAC, "bad-vxlan-mac")
    caps = _annotation(ann, CAPABILITIES, "bad-capabilities")
    generation = _annotation(ann, OBSERVED_GENERATION, "bad-observed-generation")
    return Node(
        name=name,
        underlay_ip=underlay,
        pod_cidrs=cidrs,
        labels=labels,
        public_key=None if key is None else _public_key(key),
        endpoint=None if endpoint is None else _endpoint(endpoint),
        vxlan_mac=None if mac is None else _mac(mac),
        capabilities=_capabilities(caps or ""),
        observed_generation=None if generation is None else _generation(generation),
    )


def _labels(raw: object) -> Labels:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _Invalid("bad-labels", f"metadata.labels is {json_type(raw)}, not an object")
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _Invalid("bad-labels", f"metadata.labels entry {show(k)} has {json_type(v)} as value")
    return tuple(sorted(raw.items()))


def _pod_cidrs(spec: Mapping[str, Any]) -> tuple[IPNetwork, ...]:
    field, raw = "spec.podCIDRs", spec.get("podCIDRs")
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        field, single = "spec.podCIDR", spec.get("podCIDR")
        if single is None or single == "":
            raise _Invalid("no-pod-cidr", "the node has no pod CIDR (spec.podCIDRs and spec.podCIDR empty)")
        raw = [single]
    if not isinstance(raw, list | tuple):
        raise _Invalid("bad-pod-cidr", f"{field} is {json_type(raw)}, not a list")
    out: list[IPNetwork] = []
    for item in raw:
        net = _network(item, field)
        if net in out:
            raise _Invalid("bad-pod-cidr", f"{field} lists {net} twice")
        if any(n.version == net.version for n in out):
            raise _Invalid("bad-pod-cidr", f"{field} has more than one IPv{net.version} network")
        out.append(net)
    return tuple(out)


def _network(item: object, field: str) -> IPNetwork:
    if not isinstance(item, str):
        raise _Invalid("bad-pod-cidr", f"{field} holds {json_type(item)}, not a CIDR string")
    if "/" not in item:
        raise _Invalid("bad-pod-cidr", f"{field} entry {show(item)} has no prefix length")
    try:
        net = ipaddress.ip_network(item, strict=True)
    except ValueError:
        pass
    else:
        problem = pod_cidr_problem(net)
        if problem is not None:
            raise _Invalid("bad-pod-cidr", f"{field} entry {show(item)} {problem}")
        return net
    try:
        loose = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise _Invalid("bad-pod-cidr", f"{field} entry {show(item)} is not a CIDR") from None
    raise _Invalid("bad-pod-cidr", f"{field} entry {show(item)} has host bits set (the network is {loose})")


def _underlay(status: object) -> IPAddress:
    if status is not None and not isinstance(status, Mapping):
        raise _Invalid("bad-underlay-address", f"status is {json_type(status)}, not an object")
    addresses = (status or {}).get("addresses")
    if addresses is None:
        raise _Invalid("no-underlay-address", "the node has no status.addresses")
    if not isinstance(addresses, list | tuple):
        raise _Invalid("bad-underlay-address", f"status.addresses is {json_type(addresses)}, not a list")
    for wanted in ("InternalIP", "ExternalIP"):
        for i, entry in enumerate(addresses):
            where = f"status.addresses[{i}]"
            if not isinstance(entry, Mapping):
                raise _Invalid("bad-underlay-address", f"{where} is {json_type(entry)}, not an object")
            if entry.get("type") == wanted:
                return _ip(entry.get("address"), f"{where}.address ({wanted})")
    raise _Invalid("no-underlay-address", "status.addresses has no InternalIP or ExternalIP entry")


def _ip(raw: object, where: str) -> IPAddress:
    if not isinstance(raw, str):
        raise _Invalid("bad-underlay-address", f"{where} is {json_type(raw)}, not an IP address string")
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        raise _Invalid("bad-underlay-address", f"{where} {show(raw)} is not an IP address") from None
    problem = address_problem(addr)
    if problem is not None:
        raise _Invalid("bad-underlay-address", f"{where} {show(raw)} {problem}")
    return addr


def _annotation(ann: Mapping[Any, Any], key: str, reason: str) -> str | None:
    value = ann.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Invalid(reason, f"annotation {key} is {json_type(value)}, not a string")


def _public_key(text: str) -> PublicKey:
    try:
        return PublicKey.from_base64(text)
    except InvalidKeyError as exc:  # its message never holds the value
        raise _Invalid("bad-public-key", f"annotation {PUBLIC_KEY}: {exc}") from None


def _endpoint(text: str) -> Endpoint:
    try:
        endpoint = Endpoint.parse(text)
    except ValueError:
        raise _bad("bad-endpoint", ENDPOINT, text, "is not IP:PORT or [IPv6]:PORT (port 1-65535)") from None
    problem = address_problem(endpoint.host)
    if problem is not None:
        raise _bad("bad-endpoint", ENDPOINT, text, problem)
    return endpoint


def _mac(text: str) -> str:
    mac = text.strip()
    if not _MAC.fullmatch(mac):
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is not a MAC like aa:bb:cc:dd:ee:ff")
    octets = bytes.fromhex(mac.replace(":", ""))
    if octets[0] & 1:
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is a multicast or broadcast MAC")
    if not any(octets):
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is the all-zero MAC")
    return mac.lower()


def _capabilities(text: str) -> frozenset[Transport]:
    """Known tokens only. Unknown tokens next to a known one are ignored, so that a newer agent may
    advertise more; a value with tokens but none we know is garbage (an empty value is no capability)."""
    tokens = [t for t in (t.strip().lower() for t in text.split(",")) if t]
    known = frozenset(_TOKENS[t] for t in tokens if t in _TOKENS)
    if tokens and not known:
        names = ", ".join(_TOKENS)
        raise _bad("bad-capabilities", CAPABILITIES, text, f"names no known transport ({names})")
    return known


def _generation(text: str) -> int:
    digits = text.strip()
    if not _GENERATION.fullmatch(digits) or int(digits) > MAX_GENERATION:
        raise _bad(
            "bad-observed-generation", OBSERVED_GENERATION, text, "is not a non-negative 64-bit integer"
        )
    return int(digits)


def _bad(reason: str, key: str, text: str, problem: str) -> _Invalid:
    return _Invalid(reason, f"annotation {key} {show(text)} {problem}")


def encode_annotations(node: Node) -> dict[str, str | None]:
    """Every `meshd.io/*` annotation of the node; None means "remove it" (a merge-patch null)."""
    caps = sorted(t.value for t in node.capabilities if t.value in _TOKENS)
    gen = node.observed_generation
    return {
        PUBLIC_KEY: node.public_key.base64 if node.public_key is not None else None,
        ENDPOINT: str(node.endpoint) if node.endpoint is not None else None,
        VXLAN_MAC: node.vxlan_mac.lower() if node.vxlan_mac is not None else None,
        CAPABILITIES: ",".join(caps) if caps else None,
        OBSERVED_GENERATION: str(gen) if gen is not None else None,
        UNDERLAY_IP: str(node.underlay_ip),
    }


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
