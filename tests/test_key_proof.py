"""keys.proof: the WireGuard key derives from an Ed25519 seed, a proof binds a node name to that key, only
the seed's holder can make one, and neither the seed nor the private key ever shows."""

from __future__ import annotations

import ipaddress
import pickle

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from nacl import bindings as sodium

from keys.proof import KeyProof, KeySeed, proof_message
from keys.store import NodeKey
from meshd.core.local import Identity, annotations_to_publish, local_node
from meshd.core.model import MeshConfig, Snapshot

SEED = KeySeed(bytes(range(32)))
KEY = SEED.wireguard_key().public_key()
PROOF = SEED.prove("node-v")
seeds = st.binary(min_size=32, max_size=32).map(KeySeed)


@given(seeds)
def test_the_wireguard_key_is_the_curve25519_form_of_the_ed25519_key(seed: KeySeed) -> None:
    private = seed.wireguard_key()
    x25519 = X25519PrivateKey.from_private_bytes(bytes.fromhex(private.hex)).public_key().public_bytes_raw()
    proof = seed.prove("n")
    assert private.public_key().raw == x25519 == sodium.crypto_sign_ed25519_pk_to_curve25519(proof.identity)


def test_a_proof_proves_its_own_name_and_key_only() -> None:
    assert PROOF.proves("node-v", KEY)
    assert not PROOF.proves("node-x", KEY), "a copied proof names the victim, not the copier"
    other = KeySeed(bytes(32))
    assert not PROOF.proves("node-v", other.wireguard_key().public_key()), "a proof for another key"
    assert not other.prove("node-v").proves("node-v", KEY), "a proof by another identity"
    assert not KeyProof(PROOF.identity, bytes(64)).proves("node-v", KEY)


def test_the_negated_identity_maps_to_the_same_key_but_cannot_sign() -> None:
    """Ed25519 keys A and -A (sign bit flipped) map to the same X25519 key: only the seed's holder signs."""
    negated = PROOF.identity[:31] + bytes([PROOF.identity[31] ^ 0x80])
    assert sodium.crypto_sign_ed25519_pk_to_curve25519(negated) == KEY.raw
    assert not KeyProof(negated, PROOF.signature).proves("node-v", KEY)


@given(st.integers(0, 96 * 8 - 1))
def test_any_flipped_bit_breaks_the_proof(bit: int) -> None:
    raw = bytearray(PROOF.identity + PROOF.signature)
    raw[bit // 8] ^= 1 << (bit % 8)
    assert not KeyProof(bytes(raw[:32]), bytes(raw[32:])).proves("node-v", KEY)


def test_the_message_is_domain_separated_and_unambiguous() -> None:
    assert proof_message("n", KEY).startswith(b"meshd.io/key-proof/v1\x00")
    assert len({proof_message(n, KEY) for n in ("a", "ab", "a b", "é")}) == 4


@given(st.text(max_size=200) | st.binary(max_size=200) | st.none() | st.integers())
def test_anything_parses_to_a_proof_or_none_without_raising(text: object) -> None:
    proof = KeyProof.parse(text)
    assert proof is None or proof.encode() == text


def test_the_annotation_text_round_trips_and_is_canonical() -> None:
    text = PROOF.encode()
    assert text.startswith("v1:") and KeyProof.parse(text) == PROOF
    for bad in (text.replace("v1:", "v2:"), text + "\n", text[:-3] + "B==", " " + text[1:], text.upper()):
        assert KeyProof.parse(bad) is None or KeyProof.parse(bad) != PROOF


def test_the_seed_never_shows() -> None:
    hidden = (SEED.base64, SEED.hex, SEED.wireguard_key().base64, SEED.wireguard_key().hex)
    node_key = NodeKey(SEED.wireguard_key(), SEED)
    shown = [repr(SEED), str(SEED), f"{SEED}", f"{SEED!r:>80}", repr(node_key), str(node_key)]
    shown += [str(exc) for exc in _errors()]
    for text in shown:
        assert not any(h in text or h[:12] in text for h in hidden), text
    with pytest.raises(TypeError):
        pickle.dumps(SEED)
    with pytest.raises(AttributeError):
        SEED._raw = bytes(32)


def _errors() -> list[Exception]:
    out: list[Exception] = []
    for bad in (SEED.base64[:-2] + "!=", SEED.base64 + "x"):
        try:
            KeySeed.from_base64(bad)
        except ValueError as exc:
            out.append(exc)
    return out


def test_the_local_node_publishes_its_proof_with_its_other_annotations() -> None:
    snap = Snapshot.of((), MeshConfig())
    cidr = (ipaddress.ip_network("198.19.1.0/24"),)
    under = ipaddress.ip_address("198.18.0.1")
    with_wg = Identity("node-v", KEY, under, cidr, key_proof=PROOF)
    local = local_node(with_wg, snap, vxlan_mac=None, underlay_mtu=1500, observed_generation=None)
    assert local is not None
    published = annotations_to_publish(with_wg, local, 1)
    assert published["meshd.io/key-proof"] == PROOF.encode()
    assert published["meshd.io/public-key"] == KEY.base64
    without = Identity("node-v", None, under, cidr, key_proof=PROOF)
    local = local_node(without, snap, vxlan_mac=None, underlay_mtu=1500, observed_generation=None)
    assert local is not None
    assert annotations_to_publish(without, local, 1)["meshd.io/key-proof"] is None
