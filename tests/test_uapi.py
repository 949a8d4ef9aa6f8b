"""The UAPI codec: requests as wireguard-go reads them, replies as it writes them."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, RemovePeer, UpdatePeer
from meshd.core.model import Endpoint
from meshd.core.state import PeerSpec
from overlay import uapi, uapi_get

K1 = PublicKey(bytes(range(32)))
K2 = PublicKey(bytes([0xAB]) * 32)
EP4 = Endpoint(ipaddress.ip_address("198.18.0.2"), 51820)
EP6 = Endpoint(ipaddress.ip_address("2001:db8:18::2"), 51821)
N1 = ipaddress.ip_network("198.19.2.0/24")
N6 = ipaddress.ip_network("2001:db8:19:2::/64")


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


def test_parse_get_reply() -> None:
    key = PrivateKey.generate()
    reply = (
        f"private_key={key.hex}\nlisten_port=51820\nfwmark=7\n"
        f"public_key={K1.hex}\npreshared_key={'0' * 64}\nprotocol_version=1\nendpoint=198.18.0.2:51820\n"
        "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=500000000\n"
        "tx_bytes=300\nrx_bytes=200\npersistent_keepalive_interval=25\n"
        "allowed_ip=198.19.2.0/24\nallowed_ip=2001:db8:19:2::/64\n"
        f"public_key={K2.hex}\nendpoint=[2001:db8:18::2]:51821\n"
        "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
        "persistent_keepalive_interval=0\nerrno=0\n\n"
    )
    dev = uapi_get.parse_get(reply)
    assert (dev.public_key, dev.listen_port) == (key.public_key(), 51820)
    first, second = dev.peers
    assert first.public_key == K1 and first.endpoint == EP4
    assert first.allowed_ips == {N1, N6}
    assert (first.last_handshake, first.rx_bytes, first.tx_bytes, first.persistent_keepalive) == (
        1700000000.5,
        200,
        300,
        25,
    )
    assert second.endpoint == EP6 and second.last_handshake is None and second.allowed_ips == frozenset()
    again = uapi_get.parse_get(reply).peers[0]  # the next read shares the values already parsed
    assert again == first and again.public_key is first.public_key and again.endpoint is first.endpoint


def test_a_memo_reuses_unchanged_peers_and_keeps_no_preshared_key() -> None:
    psk = "c7" * 32

    def reply(rx: int, *keys: PublicKey) -> str:
        peers = "".join(
            f"public_key={k.hex}\npreshared_key={psk}\nendpoint=198.18.0.2:51820\nrx_bytes={rx if k == K1 else 0}\n"
            "allowed_ip=198.19.2.0/24\n"
            for k in keys
        )
        return f"listen_port=51820\n{peers}errno=0\n\n"

    memo: uapi_get.PeerMemo = {}
    first = uapi_get.parse_get(reply(1, K1, K2), memo).peers
    again = uapi_get.parse_get(reply(1, K1, K2), memo).peers
    assert again == first and all(a is b for a, b in zip(again, first, strict=True))
    changed = uapi_get.parse_get(reply(2, K1, K2), memo).peers
    assert changed[0].rx_bytes == 2 and changed[0] is not first[0] and changed[1] is first[1]
    assert all(p.has_psk for p in changed)
    reordered = uapi_get.parse_get(reply(2, K2, K1), memo).peers  # wireguard-go's order is a Go map's
    assert reordered == changed and all(a is b for a, b in zip(reordered, changed, strict=True))
    uapi_get.parse_get(reply(2, K2), memo)
    assert len(memo) == 1, "only the last read's peers are kept"
    assert psk not in "".join(memo) and not any(psk in repr(p) for p in memo.values())


@pytest.mark.parametrize(
    ("reply", "public_key", "port"),
    [
        pytest.param("listen_port=0\nerrno=0\n\n", None, 0, id="fresh-device"),
        pytest.param(f"private_key={'0' * 64}\nlisten_port=1\nerrno=0\n\n", None, 1, id="zero-key"),
    ],
)
def test_parse_get_without_a_private_key(reply: str, public_key: None, port: int) -> None:
    dev = uapi_get.parse_get(reply)
    assert (dev.public_key, dev.listen_port, dev.peers) == (public_key, port, ())


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        pytest.param("errno=0\n\n", 0, id="ok"),
        pytest.param("errno=-22\n\n", -22, id="einval"),
        pytest.param("errno=-98\n\n", -98, id="addr-in-use"),
    ],
)
def test_reply_errno(reply: str, code: int) -> None:
    assert uapi.reply_errno(reply) == code


def test_errno_reply_raises_naming_the_operation() -> None:
    with pytest.raises(uapi.UapiError, match=r"adding peer AAECAwQF\.\.\..*errno=-22 \(EINVAL") as err:
        uapi.check_reply("errno=-22\n\n", f"adding peer {K1.short}...")
    assert err.value.errno == -22


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("", id="empty"),
        pytest.param("listen_port=1\n\n", id="no-errno"),
        pytest.param("junk\n\n", id="junk"),
    ],
)
def test_malformed_replies_are_protocol_errors(reply: str) -> None:
    with pytest.raises(uapi.UapiProtocolError):
        uapi_get.parse_get(reply)


def test_malformed_private_key_is_not_echoed() -> None:
    secret = "zz" + "11" * 31
    with pytest.raises(uapi.UapiProtocolError) as err:
        uapi_get.parse_get(f"private_key={secret}\nerrno=0\n\n")
    assert secret not in str(err.value)


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
