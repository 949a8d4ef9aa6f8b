"""Domain value basics: endpoints, selectors, key types."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.values import InvalidKeyError, PrivateKey, PublicKey
from meshd.core.model import Endpoint, LabelRequirement, LabelSelector, SelectorOperator


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("198.18.0.1:51820", "198.18.0.1", 51820), ("[2001:db8::1]:1", "2001:db8::1", 1)],
    ids=["v4", "v6"],
)
def test_endpoint_round_trip(text: str, host: str, port: int) -> None:
    ep = Endpoint.parse(text)
    assert ep == Endpoint(ipaddress.ip_address(host), port)
    assert str(ep) == text


ENDPOINT_GARBAGE = {
    **{t: t for t in ("", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "host:80", "2001:db8::1:80", "[::1]80")},
    "letters-port": "1.2.3.4:x",
    "full-width-digits": "1.2.3.4:\uff15\uff11\uff18\uff12\uff10",
    "arabic-indic-digits": "1.2.3.4:\u0665\u0661",
    "superscript-digit": "1.2.3.4:\u00b2",
    "signed-port": "1.2.3.4:+80",
    "six-digit-port": "1.2.3.4:051820",
    "space-in-port": "1.2.3.4: 80",
    "scoped-v6": "[fe80::1%eth0]:51820",
}


@pytest.mark.parametrize("text", ENDPOINT_GARBAGE.values(), ids=ENDPOINT_GARBAGE.keys())
def test_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)


def test_selector_semantics() -> None:
    sel = LabelSelector(
        match_labels=(("pool", "a"),),
        match_expressions=(LabelRequirement("tier", SelectorOperator.NOT_IN, frozenset({"x"})),),
    )
    assert sel.matches({"pool": "a"})
    assert not sel.matches({"pool": "a", "tier": "x"})
    assert not sel.matches({})
    assert LabelSelector().matches({})


def test_label_requirement_operator_is_an_enum_checked_when_built() -> None:
    req = LabelRequirement("tier", "NotIn", frozenset({"x"}))  # type: ignore[arg-type]
    assert req.operator is SelectorOperator.NOT_IN
    assert req == LabelRequirement("tier", SelectorOperator.NOT_IN, frozenset({"x"}))
    with pytest.raises(ValueError, match="Equals"):
        LabelRequirement("tier", "Equals")  # type: ignore[arg-type]


@given(
    st.sampled_from(SelectorOperator),
    st.sampled_from(["a", "b"]),
    st.frozensets(st.sampled_from(["x", "y", ""])),
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", ""])),
)
def test_label_requirement_matches_never_raises(
    op: SelectorOperator, key: str, values: frozenset[str], labels: dict[str, str]
) -> None:
    got = LabelRequirement(key, op, values).matches(labels)
    present = key in labels
    expected = {
        SelectorOperator.IN: present and labels[key] in values,
        SelectorOperator.NOT_IN: not (present and labels[key] in values),
        SelectorOperator.EXISTS: present,
        SelectorOperator.DOES_NOT_EXIST: not present,
    }[op]
    assert got is expected


def test_private_key_never_shows_itself() -> None:
    key = PrivateKey.generate()
    for text in (repr(key), str(key), f"{key}", f"{key!r}", f"{[key]}"):
        assert key.base64 not in text and key.hex not in text
    assert isinstance(key.public_key(), PublicKey)


def test_public_key_validation_message_has_no_value() -> None:
    bad = "A" * 43 + "!"
    with pytest.raises(InvalidKeyError) as exc:
        PublicKey.from_base64(bad)
    assert bad not in str(exc.value)
