"""Node records <-> Node values: what a peer reading our annotations sees, and what garbage does to it."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from typing import Any

import pytest

from keys.values import PrivateKey
from meshd.core.codec import (
    CAPABILITIES,
    ENDPOINT,
    INVALID_REASONS,
    KEY_PROOF,
    OBSERVED_GENERATION,
    PUBLIC_KEY,
    UNDERLAY_IP,
    VXLAN_MAC,
    decode_node,
    encode_annotations,
    encode_node,
)
from meshd.core.codec import annotations as codec_annotations
from meshd.core.model import Endpoint, InvalidNode, Node, Transport

KEY = PrivateKey.from_base64("YEz6zJ3K8iGXYyMCmHfm8Sc4Ti1ERZXGE1l/xHeNaE8=").public_key()
V4, V6 = ipaddress.ip_network("198.19.1.0/24"), ipaddress.ip_network("2001:db8:19:1::/64")
UNDERLAY = ipaddress.ip_address("198.18.0.1")


def raw(*, annotations: Any = None, spec: Any = None, status: Any = None, **meta: Any) -> dict[str, Any]:
    """A minimal valid node record, with parts replaced."""
    default_status = {"addresses": [{"type": "InternalIP", "address": "198.18.0.1"}]}
    return {
        "metadata": {"name": "n1", "annotations": annotations or {}, **meta},
        "spec": {"podCIDRs": ["198.19.1.0/24"]} if spec is None else spec,
        "status": default_status if status is None else status,
    }


def plain(**changes: Any) -> Node:
    base: dict[str, Any] = {"name": "n1", "underlay_ip": UNDERLAY, "pod_cidrs": (V4,)}
    return Node(**{**base, **changes})


def addrs(*entries: Any) -> dict[str, Any]:
    return {"addresses": list(entries)}


FULL_ANNOTATIONS = {
    PUBLIC_KEY: KEY.base64,
    ENDPOINT: "198.18.0.1:51820",
    VXLAN_MAC: "02:AB:cd:00:00:01",
    CAPABILITIES: "wireguard,vxlan,ipip",
    OBSERVED_GENERATION: "7",
    "example.com/other": "not ours",
}
FULL = plain(
    labels=(("pool", "x"), ("zone", "a")),
    public_key=KEY,
    endpoint=Endpoint(UNDERLAY, 51820),
    vxlan_mac="02:ab:cd:00:00:01",
    capabilities=frozenset(Transport) - {Transport.NONE},
    observed_generation=7,
)
V6_UNDERLAY, V6_ENDPOINT = ipaddress.ip_address("2001:db8:18::5"), ipaddress.ip_address("2001:db8:18::1")

# fmt: off
GOOD = [
    ("minimal", raw(), plain()),
    ("full", raw(labels={"zone": "a", "pool": "x"}, annotations=FULL_ANNOTATIONS), FULL),
    ("podCIDR-fallback", raw(spec={"podCIDR": "198.19.1.0/24"}), plain()),
    ("empty-podCIDRs-falls-back", raw(spec={"podCIDRs": [], "podCIDR": "198.19.1.0/24"}), plain()),
    ("dual-stack-order-kept", raw(spec={"podCIDRs": [str(V6), str(V4)], "podCIDR": str(V6)}), plain(pod_cidrs=(V6, V4))),
    ("internal-ip-preferred", raw(status=addrs({"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "203.0.113.9"}, {"type": "InternalIP", "address": "198.18.0.1"})), plain()),
    ("external-ip-fallback", raw(status=addrs({"type": "ExternalIP", "address": str(V6_UNDERLAY)})), plain(underlay_ip=V6_UNDERLAY)),
    ("v6-endpoint", raw(annotations={ENDPOINT: "[2001:db8:18::1]:51820"}), plain(endpoint=Endpoint(V6_ENDPOINT, 51820))),
    ("capabilities-whitespace-unknown-case", raw(annotations={CAPABILITIES: " vxlan , , quic,WireGuard "}), plain(capabilities=frozenset({Transport.VXLAN, Transport.WIREGUARD}))),
    ("empty-capabilities", raw(annotations={CAPABILITIES: ""}), plain()),
    ("only-separators-is-no-capability", raw(annotations={CAPABILITIES: " , ,"}), plain()),
    ("unknown-next-to-known-ignored", raw(annotations={CAPABILITIES: "quic,vxlan,%%"}), plain(capabilities=frozenset({Transport.VXLAN}))),
    ("plausible-edges", raw(spec={"podCIDRs": ["10.0.0.0/8", "2001:db8::/32"]}, status=addrs({"type": "InternalIP", "address": "240.0.0.1"})), plain(pod_cidrs=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")), underlay_ip=ipaddress.ip_address("240.0.0.1"))),
    ("null-annotation-is-absent", raw(annotations={PUBLIC_KEY: None}), plain()),
    ("generation-0", raw(annotations={OBSERVED_GENERATION: "0"}), plain(observed_generation=0)),
    ("null-labels-and-annotations", raw(labels=None, annotations=None), plain()),
]
# fmt: on


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(*c[1:], id=c[0]) for c in GOOD])
def test_decodes(obj: dict[str, Any], expected: Node) -> None:
    assert decode_node(obj) == expected


def test_underlay_override_wins_over_status() -> None:
    override = ipaddress.ip_address("198.18.9.9")
    assert decode_node(raw(), underlay_override=override) == plain(underlay_ip=override)
    no_status = {**raw(), "status": "garbage"}
    assert decode_node(no_status, underlay_override=override) == plain(underlay_ip=override)


# (id, record, InvalidNode.name, reason, a phrase the detail must contain)
# fmt: off
BAD: list[tuple[str, Any, str, str, str]] = [
    ("record-is-list", [], "", "bad-record", "not an object"),
    ("record-is-null", None, "", "bad-record", "not an object"),
    ("metadata-is-string", {"metadata": "n1"}, "", "bad-record", "metadata"),
    ("no-name", {**raw(), "metadata": {}}, "", "bad-name", "metadata.name is missing"),
    ("empty-name", raw(name=""), "", "bad-name", "metadata.name is empty"),
    ("name-is-int", raw(name=7), "", "bad-name", "metadata.name"),
    ("name-with-newline", raw(name="a\nb"), "", "bad-name", "metadata.name"),
    ("name-too-long", raw(name="a" * 254), "", "bad-name", "longer than 253"),
    ("labels-is-list", raw(labels=["a"]), "n1", "bad-labels", "metadata.labels"),
    ("label-value-int", raw(labels={"a": 1}), "n1", "bad-labels", "metadata.labels"),
    ("no-pod-cidr", raw(spec={}), "n1", "no-pod-cidr", "no pod CIDR"),
    ("empty-pod-cidr", raw(spec={"podCIDR": ""}), "n1", "no-pod-cidr", "no pod CIDR"),
    ("spec-is-list", raw(spec=[]), "n1", "bad-pod-cidr", "spec"),
    ("cidrs-is-str", raw(spec={"podCIDRs": "198.19.1.0/24"}), "n1", "bad-pod-cidr", "not a list"),
    ("cidr-is-int", raw(spec={"podCIDRs": [5]}), "n1", "bad-pod-cidr", "spec.podCIDRs"),
    ("host-bits", raw(spec={"podCIDRs": ["198.19.1.1/24"]}), "n1", "bad-pod-cidr", "host bits"),
    ("no-prefix", raw(spec={"podCIDRs": ["198.19.1.0"]}), "n1", "bad-pod-cidr", "prefix length"),
    ("garbage-podCIDR", raw(spec={"podCIDR": "pods/24"}), "n1", "bad-pod-cidr", "spec.podCIDR entry 'pods/24' is not a CIDR"),
    ("dup-cidr", raw(spec={"podCIDRs": ["198.19.1.0/24"] * 2}), "n1", "bad-pod-cidr", "twice"),
    ("two-v4-cidrs", raw(spec={"podCIDRs": ["198.19.1.0/24", "198.19.2.0/24"]}), "n1", "bad-pod-cidr", "more than one IPv4"),
    ("no-addresses", raw(status={}), "n1", "no-underlay-address", "status.addresses"),
    ("no-status", {**raw(), "status": None}, "n1", "no-underlay-address", "status.addresses"),
    ("only-hostname", raw(status=addrs({"type": "Hostname", "address": "n1"})), "n1", "no-underlay-address", "InternalIP"),
    ("status-is-list", raw(status=[1]), "n1", "bad-underlay-address", "status"),
    ("addresses-is-object", raw(status={"addresses": {}}), "n1", "bad-underlay-address", "not a list"),
    ("address-is-str", raw(status=addrs("x")), "n1", "bad-underlay-address", "addresses[0]"),
    ("hostname-as-ip", raw(status=addrs({"type": "InternalIP", "address": "n1.example"})), "n1", "bad-underlay-address", "status.addresses[0].address"),
    ("ip-as-int", raw(status=addrs({"type": "InternalIP", "address": 3232235777})), "n1", "bad-underlay-address", "not an IP address string"),
    ("annotations-is-list", raw(annotations=["x"]), "n1", "bad-annotations", "metadata.annotations"),
    ("key-short", raw(annotations={PUBLIC_KEY: "A" * 43}), "n1", "bad-public-key", PUBLIC_KEY),
    ("key-not-base64", raw(annotations={PUBLIC_KEY: "!" * 44}), "n1", "bad-public-key", "base64"),
    ("key-empty", raw(annotations={PUBLIC_KEY: ""}), "n1", "bad-public-key", PUBLIC_KEY),
    ("key-is-int", raw(annotations={PUBLIC_KEY: 1}), "n1", "bad-public-key", "not a string"),
    ("endpoint-hostname", raw(annotations={ENDPOINT: "n1.example:51820"}), "n1", "bad-endpoint", ENDPOINT),
    ("endpoint-no-port", raw(annotations={ENDPOINT: "198.18.0.1"}), "n1", "bad-endpoint", "IP:PORT"),
    ("endpoint-port-0", raw(annotations={ENDPOINT: "198.18.0.1:0"}), "n1", "bad-endpoint", "IP:PORT"),
    ("endpoint-v6-no-brackets", raw(annotations={ENDPOINT: "2001:db8::1:80"}), "n1", "bad-endpoint", "[IPv6]"),
    ("endpoint-unicode-digit", raw(annotations={ENDPOINT: "1.2.3.4:\u00b2"}), "n1", "bad-endpoint", ENDPOINT),
    ("mac-short", raw(annotations={VXLAN_MAC: "02:00:00:00:00"}), "n1", "bad-vxlan-mac", VXLAN_MAC),
    ("mac-cisco-style", raw(annotations={VXLAN_MAC: "0200.0000.0001"}), "n1", "bad-vxlan-mac", "aa:bb"),
    ("mac-multicast", raw(annotations={VXLAN_MAC: "01:00:5e:00:00:01"}), "n1", "bad-vxlan-mac", "multicast"),
    ("mac-broadcast", raw(annotations={VXLAN_MAC: "ff:ff:ff:ff:ff:ff"}), "n1", "bad-vxlan-mac", "broadcast"),
    ("mac-zero", raw(annotations={VXLAN_MAC: "00:00:00:00:00:00"}), "n1", "bad-vxlan-mac", "all-zero"),
    ("caps-is-list", raw(annotations={CAPABILITIES: ["vxlan"]}), "n1", "bad-capabilities", CAPABILITIES),
    ("caps-garbage", raw(annotations={CAPABILITIES: "%%%garbage"}), "n1", "bad-capabilities", "no known transport"),
    ("caps-none-is-not-a-transport", raw(annotations={CAPABILITIES: "none"}), "n1", "bad-capabilities", "no known transport"),
    ("caps-only-unknown", raw(annotations={CAPABILITIES: "quic, geneve"}), "n1", "bad-capabilities", "wireguard, vxlan, ipip"),
    ("generation-negative", raw(annotations={OBSERVED_GENERATION: "-1"}), "n1", "bad-observed-generation", "non-negative"),
    ("generation-float", raw(annotations={OBSERVED_GENERATION: "1e3"}), "n1", "bad-observed-generation", OBSERVED_GENERATION),
    ("generation-huge", raw(annotations={OBSERVED_GENERATION: "9" * 5000}), "n1", "bad-observed-generation", "64-bit"),
    *(
        (f"pod-cidr-{v}", raw(spec={"podCIDRs": [v]}), "n1", "bad-pod-cidr", why)
        for v, why in (("0.0.0.0/0", "is broader than /8"), ("::/0", "is broader than /32"), ("10.0.0.0/7", "is broader than /8"),
                       ("2001:db8::/31", "is broader than /32"), ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
                       ("224.0.0.0/8", "multicast"), ("ff02::/64", "multicast"), ("169.254.0.0/16", "link-local"),
                       ("fe80::/64", "link-local"), ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
                       ("255.255.255.255/32", "broadcast"), ("2001:db8::%eth0/64", "interface scope"))
    ),
    *(
        (f"underlay-{v}", raw(status=addrs({"type": "InternalIP", "address": v})), "n1", "bad-underlay-address", why)
        for v, why in (("0.0.0.0", "unspecified"), ("::", "unspecified"), ("127.0.0.1", "loopback"), ("::1", "loopback"),
                       ("224.0.0.1", "multicast"), ("255.255.255.255", "broadcast"), ("169.254.1.1", "link-local"),
                       ("fe80::1", "link-local"), ("fe80::1%eth0", "interface scope"), ("::ffff:127.0.0.1", "loopback"))
    ),
    *(
        (f"endpoint-{v}", raw(annotations={ENDPOINT: v}), "n1", "bad-endpoint", why)
        for v, why in (("0.0.0.0:51820", "unspecified"), ("[::]:51820", "unspecified"), ("127.0.0.1:51820", "loopback"),
                       ("255.255.255.255:1", "broadcast"), ("[ff02::1]:51820", "multicast"), ("[fe80::1]:51820", "link-local"),
                       ("[fe80::1%eth0]:51820", "IP:PORT"), ("1.2.3.4:\uff15\uff11\uff18\uff12\uff10", "IP:PORT"),
                       ("1.2.3.4:\u0665\u0661", "IP:PORT"), ("1.2.3.4:+80", "IP:PORT"), ("1.2.3.4:051820", "IP:PORT"))
    ),
    ("generation-is-int", raw(annotations={OBSERVED_GENERATION: 3}), "n1", "bad-observed-generation", "not a string"),
]
# fmt: on


@pytest.mark.parametrize(("obj", "name", "reason", "mentions"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_rejects_with_reason(obj: Any, name: str, reason: str, mentions: str) -> None:
    record = decode_node(obj)
    assert isinstance(record, InvalidNode)
    assert (record.name, record.reason) == (name, reason), record.detail
    assert mentions in record.detail
    assert_good_detail(record)


def assert_good_detail(record: InvalidNode) -> None:
    assert record.reason in INVALID_REASONS
    assert 0 < len(record.detail) <= 200
    assert "\n" not in record.detail and "\r" not in record.detail
    assert not re.search(r"\w+(Error|Exception)\(", record.detail), record.detail


def test_reasons_are_metric_label_values() -> None:
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)+", r) for r in INVALID_REASONS)


def test_bad_public_key_detail_has_no_key_material() -> None:
    almost = KEY.base64[:-2] + "!="
    record = decode_node(raw(annotations={PUBLIC_KEY: almost}))
    assert isinstance(record, InvalidNode) and record.reason == "bad-public-key"
    assert almost[:20] not in record.detail


def test_encode_annotations_of_a_bare_node_removes_everything_but_its_address() -> None:
    node = plain()
    assert encode_annotations(node) == {
        PUBLIC_KEY: None,
        ENDPOINT: None,
        VXLAN_MAC: None,
        CAPABILITIES: None,
        OBSERVED_GENERATION: None,
        UNDERLAY_IP: str(node.underlay_ip),
        KEY_PROOF: None,
    }


def test_the_published_underlay_address_wins_over_status_addresses() -> None:
    """`--underlay-ip` on a multi-homed node: peers must send VXLAN/IPIP to the address it chose."""
    chosen = "198.18.7.7"
    record = decode_node(raw(annotations={UNDERLAY_IP: chosen}))
    assert isinstance(record, Node) and str(record.underlay_ip) == chosen
    assert isinstance(decode_node(raw()), Node) and str(decode_node(raw()).underlay_ip) != chosen  # type: ignore[union-attr]
    own = decode_node(raw(annotations={UNDERLAY_IP: chosen}), published_underlay=False)
    assert isinstance(own, Node) and str(own.underlay_ip) != chosen, "an agent must not pin its own old copy"
    for bad in ("127.0.0.1", "not-an-ip", "0.0.0.0", "198.18.0.1:51820"):
        record = decode_node(raw(annotations={UNDERLAY_IP: bad}))
        assert isinstance(record, InvalidNode) and record.reason == "bad-underlay-address", bad
        assert UNDERLAY_IP in record.detail


def test_encode_annotations_of_a_full_node() -> None:
    node = plain(
        public_key=KEY,
        endpoint=Endpoint(ipaddress.ip_address("2001:db8:18::1"), 51820),
        vxlan_mac="02:ab:cd:00:00:01",
        capabilities=frozenset({Transport.VXLAN, Transport.WIREGUARD, Transport.IPIP}),
        observed_generation=3,
    )
    assert encode_annotations(node) == {
        PUBLIC_KEY: KEY.base64,
        ENDPOINT: "[2001:db8:18::1]:51820",
        VXLAN_MAC: "02:ab:cd:00:00:01",
        CAPABILITIES: "ipip,vxlan,wireguard",
        OBSERVED_GENERATION: "3",
        UNDERLAY_IP: str(node.underlay_ip),
        KEY_PROOF: None,
    }


def test_encode_node_is_kubernetes_shaped() -> None:
    node = plain(pod_cidrs=(V6, V4), labels=(("zone", "a"),), capabilities=frozenset({Transport.VXLAN}))
    obj = encode_node(node)
    assert obj["metadata"] == {"name": "n1", "labels": {"zone": "a"}, "annotations": {CAPABILITIES: "vxlan"}}
    assert obj["spec"] == {
        "podCIDRs": ["2001:db8:19:1::/64", "198.19.1.0/24"],
        "podCIDR": "2001:db8:19:1::/64",
    }
    assert obj["status"] == {"addresses": [{"type": "InternalIP", "address": "198.18.0.1"}]}


def test_codec_imports_no_io_libraries() -> None:
    code = (
        "import sys, meshd.core.codec\n"
        "bad = {'pyroute2', 'wgnlpy', 'kubernetes', 'prometheus_client'} & {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_capability_tokens_are_read_only() -> None:
    with pytest.raises(TypeError):
        codec_annotations.TOKENS["quic"] = Transport.NONE  # type: ignore[index]
