"""The PSK exchange's pure parts and one whole exchange over in-memory streams: HKDF derivation and what it
binds, message framing, and bad input (truncated or garbage messages get a clear error)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from keys.values import PrivateKey
from meshd.core.codec.config import decode_meshconfig, encode_meshconfig
from meshd.errors import ConfigError
from meshd.pq import wire
from meshd.pq.derive import PairKeys, derive, fingerprint
from meshd.pq.exchange import Accepted, ExchangeError, initiate, respond

KEYS = PairKeys("a", "b", PrivateKey.generate().public_key(), PrivateKey.generate().public_key())


def _kem() -> tuple[bytes, bytes, bytes]:
    key = MLKEM768PrivateKey.generate()
    ek = key.public_key().public_bytes_raw()
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey

    shared, ct = MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
    assert key.decapsulate(ct) == shared
    return shared, ek, ct


def test_derivation_is_deterministic_and_binds_every_input() -> None:
    shared, ek, ct = _kem()
    base = derive(shared, KEYS, epoch=1, ek=ek, ct=ct)
    assert base.psk == derive(shared, KEYS, epoch=1, ek=ek, ct=ct).psk and len(base.psk) == 32
    other = PrivateKey.generate().public_key()
    variants = {
        "epoch": derive(shared, KEYS, epoch=2, ek=ek, ct=ct),
        "names": derive(shared, dataclasses.replace(KEYS, initiator="c"), epoch=1, ek=ek, ct=ct),
        "swapped": derive(
            shared, PairKeys("b", "a", KEYS.responder_key, KEYS.initiator_key), epoch=1, ek=ek, ct=ct
        ),
        "key": derive(shared, dataclasses.replace(KEYS, responder_key=other), epoch=1, ek=ek, ct=ct),
        "ct": derive(shared, KEYS, epoch=1, ek=ek, ct=bytes(len(ct))),
        "secret": derive(bytes(32), KEYS, epoch=1, ek=ek, ct=ct),
    }
    assert len({v.psk for v in variants.values()} | {base.psk}) == len(variants) + 1
    assert base.check("responder", base.mac("responder")) and not base.check(
        "initiator", base.mac("responder")
    )
    assert not variants["key"].check("responder", base.mac("responder"))


def test_derived_keys_never_print() -> None:
    shared, ek, ct = _kem()
    d = derive(shared, KEYS, epoch=1, ek=ek, ct=ct)
    shown = repr(d) + str(d)
    assert d.psk.hex() not in shown and d.fingerprint in shown and fingerprint(d.psk) == d.fingerprint


def test_framing_round_trips() -> None:
    msgs: list[wire.Message] = [
        wire.Init(7, "node0", "node1", bytes(range(256)) * 4 + bytes(160)),
        wire.Response(2**64 - 1, bytes(wire.CT_SIZE), b"m" * 32),
        wire.Confirm(3, b"c" * 32),
        wire.Done(3),
        wire.Refuse("no"),
    ]
    for msg in msgs:
        assert wire.decode(wire.encode(msg)) == msg


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"", "truncated header"),
        (b"XX\x01\x04\x00\x00\x00\x08" + bytes(8), "not a meshd PSK exchange message"),
        (b"MQ\x02\x04\x00\x00\x00\x08" + bytes(8), "protocol version 2"),
        (b"MQ\x01\x09\x00\x00\x00\x08" + bytes(8), "unknown message type 9"),
        (b"MQ\x01\x04\x00\x01\x00\x00", "exceeds 4096"),
        (b"MQ\x01\x04\x00\x00\x00\x08" + bytes(3), "truncated DONE message"),
        (b"MQ\x01\x04\x00\x00\x00\x03" + bytes(3), "epoch needs 8 bytes"),
        (b"MQ\x01\x04\x00\x00\x00\x09" + bytes(9), "1 bytes too many"),
        (b"MQ\x01\x03\x00\x00\x00\x0a" + bytes(10), "mac needs 32 bytes"),
        (b"MQ\x01\x01\x00\x00\x00\x0b" + bytes(8) + b"\x01\xff\x01", "not UTF-8"),
    ],
    ids=[
        "empty",
        "magic",
        "version",
        "type",
        "too-long",
        "short-body",
        "short-epoch",
        "extra",
        "short-mac",
        "name",
    ],
)
def test_bad_frames_get_a_clear_error(frame: bytes, error: str) -> None:
    with pytest.raises(wire.WireError, match=error):
        wire.decode(frame)


def test_encoding_refuses_wrong_sizes() -> None:
    with pytest.raises(wire.WireError, match="ek is 3 bytes"):
        wire.encode(wire.Init(1, "a", "b", b"abc"))
    with pytest.raises(wire.WireError, match="node name of 0 bytes"):
        wire.encode(wire.Init(1, "", "b", bytes(wire.EK_SIZE)))


class _Pipe:
    """Two in-memory stream pairs joined back to back, as a TCP connection would join them."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.a_reader, self.b_reader = asyncio.StreamReader(), asyncio.StreamReader()
        self.a_writer = _Writer(self.b_reader, loop)
        self.b_writer = _Writer(self.a_reader, loop)


class _Writer:
    def __init__(self, peer: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.peer.feed_data(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.peer.feed_eof()


async def test_a_whole_exchange_installs_one_psk_at_both_ends() -> None:
    pipe, installed = _Pipe(), {}

    async def put(side: str, psk: bytes) -> None:
        installed[side] = psk

    accept = Accepted(KEYS, 5, lambda psk: put("b", psk))
    got_a, got_b = await asyncio.gather(
        initiate(pipe.a_reader, pipe.a_writer, KEYS, epoch=1, install=lambda psk: put("a", psk)),  # type: ignore[arg-type]
        respond(pipe.b_reader, pipe.b_writer, lambda init: accept),  # type: ignore[arg-type]
    )
    assert got_a == got_b and got_a.epoch == 5  # the responder raised the epoch to its next one
    assert installed["a"] == installed["b"] and len(installed["a"]) == 32


async def test_different_views_fail_confirmation_and_install_nothing() -> None:
    pipe, installed = _Pipe(), []
    wrong = dataclasses.replace(KEYS, responder_key=PrivateKey.generate().public_key())

    async def put(psk: bytes) -> None:
        installed.append(psk)

    results = await asyncio.gather(
        initiate(pipe.a_reader, pipe.a_writer, KEYS, epoch=1, install=put),  # type: ignore[arg-type]
        respond(pipe.b_reader, pipe.b_writer, lambda init: Accepted(wrong, 1, put)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(results[0], ExchangeError) and results[0].reason == "confirm"
    assert isinstance(results[1], ExchangeError) and results[1].reason == "refused"
    assert installed == []


@pytest.mark.parametrize(
    "garbage",
    [b"MQ\x01\x01\x00\x00", b"GET / HTTP/1.1\r\n\r\n", b"MQ\x01\x02" + bytes(4)],
    ids=["cut", "http", "wrong-type"],
)
async def test_garbage_to_the_responder_is_a_protocol_error(garbage: bytes) -> None:
    pipe = _Pipe()
    pipe.a_writer.write(garbage)
    pipe.a_writer.close()
    with pytest.raises(ExchangeError) as info:
        await respond(pipe.b_reader, pipe.b_writer, lambda init: "never asked")  # type: ignore[arg-type]
    assert info.value.reason == "protocol"


async def test_a_refused_init_is_reported_to_the_initiator() -> None:
    pipe = _Pipe()

    async def nothing(psk: bytes) -> None:
        raise AssertionError("nothing may be installed")

    results = await asyncio.gather(
        initiate(pipe.a_reader, pipe.a_writer, KEYS, epoch=1, install=nothing),  # type: ignore[arg-type]
        respond(pipe.b_reader, pipe.b_writer, lambda init: "b expects a -> b"),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(results[0], ExchangeError) and "refused: b expects a -> b" in str(results[0])


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"postQuantum": "on"}, "spec.wireguard.postQuantum: expected one of Enabled, Disabled"),
        (
            {"pskRotationInterval": "2 minutes"},
            "spec.wireguard.pskRotationInterval: '2 minutes' is not a duration",
        ),
        ({"pskRotationInterval": "9s"}, "must be between 10s and 24h"),
        ({"pskRotationInterval": "25h"}, "must be between 10s and 24h"),
        ({"pskRotationInterval": 120}, "expected a string"),
    ],
)
def test_config_fields_are_validated(value: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        decode_meshconfig({"spec": {"wireguard": value}})


def test_config_fields_default_and_round_trip() -> None:
    default = decode_meshconfig({"spec": {}}).wireguard
    assert (default.post_quantum, default.psk_rotation_interval) == (False, 120.0)
    cfg = decode_meshconfig(
        {"spec": {"wireguard": {"postQuantum": "Enabled", "pskRotationInterval": "1m30s"}}}
    )
    assert (cfg.wireguard.post_quantum, cfg.wireguard.psk_rotation_interval) == (True, 90.0)
    assert decode_meshconfig(encode_meshconfig(cfg)) == cfg
