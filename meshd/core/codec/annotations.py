"""Our `meshd.io/*` annotations: their names, and the decoders and encoder of their values. Pure.

A decoder raises `Invalid` (reason + one-line detail), which `decode_node` turns into an InvalidNode; the
key proof is the exception: a proof that does not parse is no proof, never an invalid node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from keys.proof import KeyProof
from keys.values import InvalidKeyError, PublicKey
from meshd.core.codec.text import json_type, show
from meshd.core.model import Endpoint, Node, Transport, address_problem

PREFIX = "meshd.io/"
PUBLIC_KEY = "meshd.io/public-key"
ENDPOINT = "meshd.io/endpoint"
VXLAN_MAC = "meshd.io/vxlan-mac"
CAPABILITIES = "meshd.io/capabilities"
OBSERVED_GENERATION = "meshd.io/observed-generation"
UNDERLAY_IP = "meshd.io/underlay-ip"  # wins over status.addresses: what `--underlay-ip` chose
KEY_PROOF = "meshd.io/key-proof"  # keys.proof: the node holds the secret of its public key
ANNOTATIONS = (PUBLIC_KEY, ENDPOINT, VXLAN_MAC, CAPABILITIES, OBSERVED_GENERATION, UNDERLAY_IP, KEY_PROOF)

MAX_GENERATION = 2**63 - 1
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_GENERATION = re.compile(r"[0-9]{1,19}")
TOKENS: Mapping[str, Transport] = MappingProxyType(
    {t.value: t for t in (Transport.WIREGUARD, Transport.VXLAN, Transport.IPIP)}
)
POST_QUANTUM = "pq"  # a capability that is no transport: takes part in PSK exchanges (meshd.pq)


class Invalid(Exception):
    """Raised by the field decoders, turned into an InvalidNode by decode_node."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def string_annotation(ann: Mapping[Any, Any], key: str, reason: str) -> str | None:
    value = ann.get(key)
    if value is None or isinstance(value, str):
        return value
    raise Invalid(reason, f"annotation {key} is {json_type(value)}, not a string")


def decode_public_key(text: str) -> PublicKey:
    try:
        return PublicKey.from_base64(text)
    except InvalidKeyError as exc:  # its message never holds the value
        raise Invalid("bad-public-key", f"annotation {PUBLIC_KEY}: {exc}") from None


def decode_endpoint(text: str) -> Endpoint:
    try:
        endpoint = Endpoint.parse(text)
    except ValueError:
        raise _bad("bad-endpoint", ENDPOINT, text, "is not IP:PORT or [IPv6]:PORT (port 1-65535)") from None
    problem = address_problem(endpoint.host)
    if problem is not None:
        raise _bad("bad-endpoint", ENDPOINT, text, problem)
    return endpoint


def decode_mac(text: str) -> str:
    mac = text.strip()
    if not _MAC.fullmatch(mac):
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is not a MAC like aa:bb:cc:dd:ee:ff")
    octets = bytes.fromhex(mac.replace(":", ""))
    if octets[0] & 1:
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is a multicast or broadcast MAC")
    if not any(octets):
        raise _bad("bad-vxlan-mac", VXLAN_MAC, text, "is the all-zero MAC")
    return mac.lower()


def decode_capabilities(text: str) -> frozenset[Transport]:
    """Known tokens only. Unknown tokens next to a known one are ignored, so that a newer agent may
    advertise more; a value with tokens but none we know is garbage (an empty value is no capability)."""
    tokens = [t for t in (t.strip().lower() for t in text.split(",")) if t]
    known = frozenset(TOKENS[t] for t in tokens if t in TOKENS)
    if tokens and not known:
        names = ", ".join(TOKENS)
        raise _bad("bad-capabilities", CAPABILITIES, text, f"names no known transport ({names})")
    return known


def decode_post_quantum(text: str) -> bool:
    """Whether the capabilities name `pq` (checked for garbage by decode_capabilities)."""
    return POST_QUANTUM in (t.strip().lower() for t in text.split(","))


def decode_generation(text: str) -> int:
    digits = text.strip()
    if not _GENERATION.fullmatch(digits) or int(digits) > MAX_GENERATION:
        raise _bad(
            "bad-observed-generation", OBSERVED_GENERATION, text, "is not a non-negative 64-bit integer"
        )
    return int(digits)


def decode_key_proof(value: object) -> KeyProof | None:
    """The published proof, unchecked (conflicts.py checks it, and only where a key is disputed). Garbage,
    or any value of the wrong type, is no proof: never an invalid node, never an exception."""
    return KeyProof.parse(value)


def _bad(reason: str, key: str, text: str, problem: str) -> Invalid:
    return Invalid(reason, f"annotation {key} {show(text)} {problem}")


def encode_annotations(node: Node) -> dict[str, str | None]:
    """Every `meshd.io/*` annotation of the node; None means "remove it" (a merge-patch null)."""
    caps = sorted(t.value for t in node.capabilities if t.value in TOKENS) + (
        [POST_QUANTUM] if node.post_quantum else []
    )
    gen = node.observed_generation
    return {
        PUBLIC_KEY: node.public_key.base64 if node.public_key is not None else None,
        ENDPOINT: str(node.endpoint) if node.endpoint is not None else None,
        VXLAN_MAC: node.vxlan_mac.lower() if node.vxlan_mac is not None else None,
        CAPABILITIES: ",".join(caps) if caps else None,
        OBSERVED_GENERATION: str(gen) if gen is not None else None,
        UNDERLAY_IP: str(node.underlay_ip),
        KEY_PROOF: node.key_proof.encode() if node.key_proof is not None and node.public_key else None,
    }
