"""The shared address parsers are ipaddress's own (same value or same refusal) for any text: held equal
over random strings near the dotted-quad form, and over printed addresses and networks of both families."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.core.interned import parse_address, parse_ipv4, parse_network

_NEAR = st.text(alphabet="0123456789./: a\u0661", max_size=22)
_V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_PRINTED = st.one_of(_V4, st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)).map(str)
_CIDRS = st.tuples(_V4, st.integers(0, 32), st.booleans()).map(
    lambda t: f"{t[0]}/{t[1]}" if t[2] else f"{ipaddress.IPv4Network((int(t[0]), t[1]), strict=False)}"
)


def _same(ours: Callable[[], object], theirs: Callable[[], object]) -> None:
    """Equal results, or both refused."""
    try:
        want = theirs()
    except ValueError:
        with pytest.raises(ValueError):
            ours()
        return
    got = ours()
    assert got == want and type(got) is type(want)


@given(st.one_of(_NEAR, _PRINTED))
def test_parse_address_is_ip_address(text: str) -> None:
    _same(lambda: parse_address(text), lambda: ipaddress.ip_address(text))


@given(st.one_of(_NEAR, _PRINTED))
def test_parse_ipv4_is_ipv4_address(text: str) -> None:
    _same(lambda: parse_ipv4(text), lambda: ipaddress.IPv4Address(text))


@given(st.one_of(_NEAR, _CIDRS, _PRINTED.map(lambda a: f"{a}/64")))
def test_parse_network_is_strict_ip_network(text: str) -> None:
    _same(lambda: parse_network(text), lambda: ipaddress.ip_network(text, strict=True))


@pytest.mark.parametrize(
    "text",
    ["01.2.3.4", "1.2.3.256", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4\n", "\u0661.2.3.4", "1.2.3.4/"],
)
def test_what_ipaddress_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_host_bits_and_prefixes() -> None:
    with pytest.raises(ValueError):
        parse_network("198.19.0.1/24")
    with pytest.raises(ValueError):
        parse_network("198.19.0.0/33")
    assert parse_network("10.0.0.0/08") == ipaddress.ip_network("10.0.0.0/8")  # ipaddress allows a leading 0
    assert parse_network("198.19.4.0/24") is parse_network("198.19.4.0/24")  # one shared object
