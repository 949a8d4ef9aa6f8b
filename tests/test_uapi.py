"""The UAPI codec's requests, as wireguard-go reads them: encoding, refusing unsafe or invalid values
before sending, and never replacing all peers."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.model import Endpoint
from meshd.core.state import PeerSpec
from overlay import uapi
from tests.support.uapi_values import EP4, EP6, K1, K2, N1, N6

ENCODE_CASES = [
    pytest.param(
        uapi.encode_add_peer(PeerSpec(K1, EP4, frozenset({N6, N1}), 25)),
        f"set=1\npublic_key={K1.hex}\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\nallowed_ip=198.19.2.0/24\nallowed_ip=2001:db8:19:2::/64\n\n",
        id="add-peer-v4-endpoint-both-families",
    ),
    pytest.param(
        uapi.encode_add_peer(PeerSpec(K1, EP6, frozenset())),
        f"set=1\npublic_key={K1.hex}\nendpoint=[2001:db8:18::2]:51821\npersistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n\n",
        id="add-peer-v6-endpoint-no-ips",
    ),
    pytest.param(
        uapi.encode_add_peer(PeerSpec(K1, None, frozenset({N1}))),
        f"set=1\npublic_key={K1.hex}\npersistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\nallowed_ip=198.19.2.0/24\n\n",
        id="add-peer-learned-endpoint-not-sent",
    ),
    pytest.param(
        uapi.encode_update_peer(UpdatePeer(K2, persistent_keepalive=5)),
        f"set=1\npublic_key={K2.hex}\nupdate_only=true\npersistent_keepalive_interval=5\n\n",
        id="update-keepalive-only",
    ),
    pytest.param(
        uapi.encode_update_peer(UpdatePeer(K2, allowed_ips=frozenset({N1}))),
        f"set=1\npublic_key={K2.hex}\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=198.19.2.0/24\n\n",
        id="update-allowed-ips-only",
    ),
    pytest.param(
        uapi.encode_update_peer(UpdatePeer(K2, endpoint=EP6)),
        f"set=1\npublic_key={K2.hex}\nupdate_only=true\nendpoint=[2001:db8:18::2]:51821\n\n",
        id="update-endpoint-only",
    ),
    pytest.param(
        uapi.encode_remove_peer(K2),
        f"set=1\npublic_key={K2.hex}\nremove=true\n\n",
        id="remove-peer",
    ),
    pytest.param(uapi.encode_device(listen_port=51820), "set=1\nlisten_port=51820\n\n", id="device-port"),
]


@pytest.mark.parametrize(("encoded", "expected"), ENCODE_CASES)
def test_encode(encoded: str, expected: str) -> None:
    assert encoded == expected


def test_device_request_carries_the_private_key_as_hex() -> None:
    key = PrivateKey.generate()
    assert (
        uapi.encode_device(private_key=key, listen_port=0)
        == f"set=1\nprivate_key={key.hex}\nlisten_port=0\n\n"
    )


INVALID = [
    pytest.param(lambda: uapi.encode_device(listen_port=65536), "listen port", id="port-too-big"),
    pytest.param(lambda: uapi.encode_device(listen_port=-1), "listen port", id="port-negative"),
    pytest.param(
        lambda: uapi.encode_add_peer(PeerSpec(K1, EP4, frozenset(), 65536)),
        "keepalive",
        id="keepalive-too-big",
    ),
    pytest.param(
        lambda: uapi.encode_update_peer(UpdatePeer(K1, persistent_keepalive=-1)),
        "keepalive",
        id="keepalive-neg",
    ),
    pytest.param(
        lambda: uapi.encode_add_peer(PeerSpec(K1, EP4, frozenset({"198.19.0.1"}))),  # type: ignore[arg-type]
        "not an IP network",
        id="allowed-ip-string",
    ),
    pytest.param(
        lambda: uapi.encode_update_peer(
            UpdatePeer(K1, allowed_ips=frozenset({ipaddress.ip_address("198.19.0.1")}))  # type: ignore[arg-type]
        ),
        "not an IP network",
        id="allowed-ip-address",
    ),
    pytest.param(lambda: uapi.encode_remove_peer(b"x" * 32), "public key", id="key-not-a-key"),  # type: ignore[arg-type]
]


ZONED = ipaddress.ip_address("2001:db8:18::2%eth0")
INJECTED = ipaddress.ip_address("2001:db8:18::2%x\nremove=true")  # the scope ID is not checked
ZONED_NET = ipaddress.ip_network("2001:db8:19::%1/64")
UNSAFE = [
    pytest.param(
        lambda: uapi.encode_add_peer(PeerSpec(K1, Endpoint(ZONED, 51820), frozenset())),
        "'endpoint' has a '%' zone ID",
        id="endpoint-zone-id",
    ),
    pytest.param(
        lambda: uapi.encode_update_peer(UpdatePeer(K1, endpoint=Endpoint(ZONED, 51820))),
        "'endpoint' has a '%' zone ID",
        id="update-endpoint-zone-id",
    ),
    pytest.param(
        lambda: uapi.encode_add_peer(PeerSpec(K1, Endpoint(INJECTED, 51820), frozenset())),
        r"'endpoint' contains control character '\\n'",
        id="endpoint-newline",
    ),
    pytest.param(
        lambda: uapi.encode_add_peer(PeerSpec(K1, None, frozenset({N1, ZONED_NET}))),
        "'allowed_ip' has a '%' zone ID",
        id="allowed-ip-zone-id",
    ),
    pytest.param(
        lambda: uapi.encode_update_peer(UpdatePeer(K1, allowed_ips=frozenset({ZONED_NET}))),
        "'allowed_ip' has a '%' zone ID",
        id="update-allowed-ip-zone-id",
    ),
    pytest.param(
        lambda: uapi.encode_add_peer(
            PeerSpec(K1, Endpoint(ipaddress.ip_address("2001:db8::1%a\x7f"), 1), frozenset())
        ),
        r"control character '\\x7f'",
        id="endpoint-del-char",
    ),
    pytest.param(
        lambda: uapi.encode_add_peer(
            PeerSpec(K1, Endpoint(ipaddress.ip_address("2001:db8::1%a\tb"), 1), frozenset())
        ),
        r"control character '\\t'",
        id="endpoint-tab",
    ),
]


@pytest.mark.parametrize(("build", "message"), UNSAFE)
def test_control_characters_and_zone_ids_are_refused_before_sending(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(("build", "message"), INVALID)
def test_invalid_values_raise_before_encoding(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


keys = st.binary(min_size=32, max_size=32).map(PublicKey)
nets = st.lists(
    st.one_of(
        st.builds(
            lambda a, p: ipaddress.ip_network((a, p), strict=False), st.ip_addresses(v=4), st.integers(0, 32)
        ),
        st.builds(
            lambda a, p: ipaddress.ip_network((a, p), strict=False), st.ip_addresses(v=6), st.integers(0, 128)
        ),
    ),
    max_size=4,
).map(frozenset)
endpoints = st.one_of(st.none(), st.builds(Endpoint, st.ip_addresses(), st.integers(1, 65535)))
keepalives = st.integers(0, 65535)
changes = st.one_of(
    st.builds(
        lambda k, e, n, ka: uapi.encode_add_peer(PeerSpec(k, e, n, ka)), keys, endpoints, nets, keepalives
    ),
    st.builds(
        lambda k, e, n, ka: uapi.encode_update_peer(UpdatePeer(k, e, n, ka)),
        keys,
        endpoints,
        st.one_of(st.none(), nets),
        st.one_of(st.none(), keepalives),
    ),
    st.builds(uapi.encode_remove_peer, keys),
)


@given(changes)
def test_no_request_ever_replaces_all_peers(request: str) -> None:
    lines = request.split("\n")
    assert "replace_peers=true" not in request
    assert lines[0] == "set=1" and request.endswith("\n\n")
    assert sum(line.startswith("public_key=") for line in lines) == 1  # one peer per request
    if "replace_allowed_ips=true" in lines:
        assert lines.index("replace_allowed_ips=true") > lines.index(
            next(x for x in lines if x.startswith("public_key="))
        )


@given(st.lists(changes, min_size=1, max_size=6))
def test_a_batch_is_the_single_requests_joined_in_one_set(requests: list[str]) -> None:
    """encode_peer_changes sends exactly the per-peer sections, in order, under one `set=1`."""
    sections = [r.removeprefix("set=1\n").removesuffix("\n") for r in requests]
    expected = "set=1\n" + "".join(sections) + "\n"
    decoded = [_as_action(r) for r in requests]
    assert uapi.encode_peer_changes(decoded) == expected
    assert "replace_peers" not in expected


def _as_action(request: str) -> AddPeer | UpdatePeer | RemovePeer:
    """Rebuild the action behind one single-peer request (the strategies above only yield requests)."""
    fields = [line.split("=", 1) for line in request.split("\n")[1:] if line]
    key = PublicKey.from_hex(fields[0][1])
    values = dict(fields)
    nets = frozenset(ipaddress.ip_network(v) for k, v in fields if k == "allowed_ip")
    endpoint = Endpoint.parse(values["endpoint"]) if "endpoint" in values else None
    keepalive = values.get("persistent_keepalive_interval")
    if values.get("remove") == "true":
        return RemovePeer(key)
    if values.get("update_only") == "true":
        return UpdatePeer(
            key,
            endpoint,
            nets if "replace_allowed_ips" in values else None,
            int(keepalive) if keepalive is not None else None,
        )
    return AddPeer(PeerSpec(key, endpoint, nets, int(keepalive or 0)))


def test_a_batch_with_one_bad_change_encodes_nothing() -> None:
    good = AddPeer(PeerSpec(PrivateKey.generate().public_key(), None, frozenset()))
    bad = UpdatePeer(PrivateKey.generate().public_key(), persistent_keepalive=70000)
    with pytest.raises(ValueError, match="keepalive"):
        uapi.encode_peer_changes([good, bad])
