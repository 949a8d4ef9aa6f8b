"""The UAPI codec's replies, as wireguard-go writes them: get replies, the peer memo, errno, malformed
replies."""

from __future__ import annotations

import pytest

from keys.values import PrivateKey, PublicKey
from overlay import uapi, uapi_get
from tests.support.uapi_values import EP4, EP6, K1, K2, N1, N6


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
