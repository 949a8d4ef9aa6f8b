"""`spec.wireguard.keyRotationInterval`: Go-style durations, checked by the CRD schema and by the agent."""

from __future__ import annotations

import pytest

from meshd.core.codec import decode_meshconfig, encode_meshconfig
from meshd.core.duration import DurationError, format_duration, parse_duration
from meshd.core.model import MeshConfig, WireGuardSettings
from meshd.errors import ConfigError
from tests.support.crd import Doc, admit, crd, meshconfig, schema

__all__ = ["crd", "schema"]  # fixtures


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("15s", 15.0),
        ("90m", 5400.0),
        ("720h", 2592000.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("500ms", 0.5),
        ("10s500ms", 10.5),
        ("1µs", 1e-6),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "15", "1d", "-1s", "+1s", "1 s", "s", "1.s", ".5s", "1h 30m", "fast", "1H"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(DurationError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [15, None, 1.5, ["15s"]])
def test_parse_duration_wants_a_string(value: object) -> None:
    with pytest.raises(DurationError, match="expected a duration string"):
        parse_duration(value)


@pytest.mark.parametrize("seconds", [0.0, 10.0, 15.0, 10.5, 2592000.0, 315360000.0])
def test_format_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def wg(**fields: object) -> Doc:
    return meshconfig(wireguard=fields)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("10s", 10.0), ("15s", 15.0), ("720h", 2592000.0), ("87600h", 315360000.0)],
)
def test_agent_and_crd_accept(schema: Doc, text: str, seconds: float) -> None:
    assert admit(schema, wg(keyRotationInterval=text), strict=True) == []
    config = decode_meshconfig(wg(keyRotationInterval=text))
    assert config.wireguard.key_rotation_interval == seconds
    assert decode_meshconfig(encode_meshconfig(config)) == config


def test_absent_means_never() -> None:
    assert decode_meshconfig(wg()).wireguard.key_rotation_interval == 0
    assert "keyRotationInterval" not in encode_meshconfig(MeshConfig())["spec"]["wireguard"]


@pytest.mark.parametrize("value", ["15", "1d", "-15s", "fast", 15, True])
def test_crd_and_agent_refuse_malformed(schema: Doc, value: object) -> None:
    assert admit(schema, wg(keyRotationInterval=value), strict=True) != []
    with pytest.raises(ConfigError, match=r"^spec\.wireguard\.keyRotationInterval: "):
        decode_meshconfig(wg(keyRotationInterval=value))


@pytest.mark.parametrize("text", ["1s", "9s", "9999ms", "87601h"])
def test_agent_refuses_out_of_range(text: str) -> None:
    """The pattern admits them; the agent explains the range (and keeps its previous MeshConfig)."""
    with pytest.raises(
        ConfigError, match=r'keyRotationInterval: expected "0s" \(never\) or a duration from 10s'
    ):
        decode_meshconfig(wg(keyRotationInterval=text))


def test_model_default_is_never() -> None:
    assert WireGuardSettings().key_rotation_interval == 0
