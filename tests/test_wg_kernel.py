"""KernelWireGuard: the contract against a behavioural fake of the kernel family, and the real kernel
(`-m kernel`: scripts/vm runs it in a VM with Debian's kernel)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from keys.values import PrivateKey
from meshd.core.actions import UpdatePeer
from meshd.core.model import Endpoint
from meshd.errors import UnsupportedError
from overlay.kernel import KernelWireGuard
from tests.fakes.wg_genl import FakeWireGuardNetlink
from tests.support.kernel import kernel
from tests.support.wg import add_peer, exists, peers_of, remove_peer, update_peer
from tests.support.wg_specs import NAME, net, peer, spec_for


@pytest.fixture
def fake() -> FakeWireGuardNetlink:
    return FakeWireGuardNetlink()


@pytest.fixture
async def device(fake: FakeWireGuardNetlink) -> KernelWireGuard:
    key = PrivateKey.generate()
    dev = KernelWireGuard(NAME, key, client=fake)
    await dev.create(spec_for(key))
    return dev


async def test_create_makes_an_up_link_with_our_key_and_port(fake: FakeWireGuardNetlink) -> None:
    key = PrivateKey.generate()
    dev = KernelWireGuard(NAME, key, client=fake)
    assert not await exists(dev)
    await dev.create(spec_for(key))
    assert await exists(dev)
    assert fake.devices[NAME].up
    assert (await dev.observe_device()).public_key == key.public_key()  # type: ignore[union-attr]
    assert (await dev.observe_device()).listen_port == 51820  # type: ignore[union-attr]


async def test_create_adopts_an_existing_device_and_keeps_its_peers(
    fake: FakeWireGuardNetlink, device: KernelWireGuard
) -> None:
    p = peer(1, "198.19.1.0/24")
    await add_peer(device, p)
    fake.traffic(NAME, p.public_key, at=1000.5, rx=10, tx=20)
    before = await peers_of(device)
    again = KernelWireGuard(NAME, device._key, client=fake)  # an agent restart
    await again.create(spec_for(device._key))
    assert await peers_of(again) == before
    assert [c[0] for c in fake.calls].count("link_add") == 1


async def test_configure_with_nothing_to_change_sends_nothing(
    fake: FakeWireGuardNetlink, device: KernelWireGuard
) -> None:
    sent = len(fake.calls)
    await device.configure(spec_for(device._key))
    assert len(fake.calls) == sent


async def test_configure_changes_only_the_port(fake: FakeWireGuardNetlink, device: KernelWireGuard) -> None:
    await device.configure(spec_for(device._key, port=51999))
    assert (await device.observe_device()).listen_port == 51999  # type: ignore[union-attr]
    assert fake.calls[-1] == ("set_device", NAME, (None, 51999))


async def test_without_the_module_create_is_unsupported() -> None:
    key = PrivateKey.generate()
    dev = KernelWireGuard(NAME, key, client=FakeWireGuardNetlink(supported=False))
    with pytest.raises(UnsupportedError, match="lacks WireGuard"):
        await dev.create(spec_for(key))


async def test_add_peer_is_observed(device: KernelWireGuard) -> None:
    p = peer(1, "198.19.1.0/24", "2001:db8:19:1::/64", keepalive=25)
    await add_peer(device, p)
    (seen,) = await peers_of(device)
    assert (seen.public_key, seen.endpoint, seen.allowed_ips, seen.persistent_keepalive) == (
        p.public_key,
        p.endpoint,
        p.allowed_ips,
        25,
    )
    assert seen.last_handshake is None


async def test_reapplying_a_peer_keeps_its_handshake_and_counters(
    fake: FakeWireGuardNetlink, device: KernelWireGuard
) -> None:
    p = peer(1, "198.19.1.0/24")
    await add_peer(device, p)
    fake.traffic(NAME, p.public_key, at=1000.0, rx=100, tx=200)
    before = await peers_of(device)
    await add_peer(device, p)
    assert await peers_of(device) == before


async def test_updating_one_peer_leaves_the_others_alone(
    fake: FakeWireGuardNetlink, device: KernelWireGuard
) -> None:
    a, b = peer(1, "198.19.1.0/24"), peer(2, "198.19.2.0/24")
    for p in (a, b):
        await add_peer(device, p)
        fake.traffic(NAME, p.public_key, at=1000.0, rx=100, tx=200)
    other_before = {p.public_key: p for p in await peers_of(device)}[b.public_key]
    await update_peer(device, UpdatePeer(a.public_key, allowed_ips=frozenset({net("198.19.9.0/24")})))
    await update_peer(device, UpdatePeer(a.public_key, persistent_keepalive=5))
    after = {p.public_key: p for p in await peers_of(device)}
    assert after[b.public_key] == other_before
    assert after[a.public_key].allowed_ips == {net("198.19.9.0/24")}
    assert after[a.public_key].persistent_keepalive == 5
    assert (after[a.public_key].rx_bytes, after[a.public_key].last_handshake) == (100, 1000.0)


async def test_update_leaves_unnamed_fields_and_never_creates_a_peer(device: KernelWireGuard) -> None:
    a = peer(1, "198.19.1.0/24", keepalive=25)
    await add_peer(device, a)
    await update_peer(
        device, UpdatePeer(a.public_key, endpoint=Endpoint(ipaddress.ip_address("198.18.0.9"), 1))
    )
    await update_peer(device, UpdatePeer(peer(7).public_key, persistent_keepalive=5))
    (seen,) = await peers_of(device)
    assert (seen.allowed_ips, seen.persistent_keepalive, str(seen.endpoint)) == (
        a.allowed_ips,
        25,
        "198.18.0.9:1",
    )


async def test_remove_peer_removes_exactly_that_peer(device: KernelWireGuard) -> None:
    a, b = peer(1, "198.19.1.0/24"), peer(2, "198.19.2.0/24")
    await add_peer(device, a)
    await add_peer(device, b)
    await remove_peer(device, a.public_key)
    assert [p.public_key for p in await peers_of(device)] == [b.public_key]


async def test_invalid_values_fail_before_anything_is_sent(
    fake: FakeWireGuardNetlink, device: KernelWireGuard
) -> None:
    sent = len(fake.calls)
    with pytest.raises(ValueError, match="keepalive"):
        await add_peer(device, peer(1, "198.19.1.0/24", keepalive=70000))
    with pytest.raises(ValueError, match="not an IP network"):
        await update_peer(device, UpdatePeer(peer(1).public_key, allowed_ips=frozenset({"x"})))  # type: ignore[arg-type]
    assert len(fake.calls) == sent
    assert await peers_of(device) == ()


async def test_delete_removes_the_link(fake: FakeWireGuardNetlink, device: KernelWireGuard) -> None:
    await device.delete()
    assert not await exists(device)
    await device.delete()  # already gone: no error


async def test_private_key_never_appears_in_errors(fake: FakeWireGuardNetlink) -> None:
    key = PrivateKey.generate()
    fake.other_links.add(NAME)  # a non-WireGuard link holds our name
    dev = KernelWireGuard(NAME, key, client=fake)
    with pytest.raises(Exception) as err:
        await dev.create(spec_for(key))
    assert key.base64 not in str(err.value) and key.hex not in str(err.value)
    assert "not a WireGuard device" in str(err.value)


# --- the real kernel --------------------------------------------------------------------------------


@pytest.mark.netns
@kernel
def test_real_kernel_device_round_trip(kernel_ns: str) -> None:
    async def scenario() -> None:
        key = PrivateKey.generate()
        dev = KernelWireGuard(NAME, key, kernel_ns)
        await dev.create(spec_for(key))
        a, b = peer(1, "198.19.1.0/24"), peer(2, "2001:db8:19:2::/64")
        await add_peer(dev, a)
        await add_peer(dev, b)
        await update_peer(dev, UpdatePeer(a.public_key, persistent_keepalive=5))
        await remove_peer(dev, b.public_key)
        (seen,) = await peers_of(dev)
        assert (seen.public_key, seen.allowed_ips, seen.persistent_keepalive) == (
            a.public_key,
            a.allowed_ips,
            5,
        )
        assert (await dev.observe_device()).public_key == key.public_key()  # type: ignore[union-attr]
        await dev.delete()
        assert not await exists(dev)
        await dev.close()

    asyncio.run(scenario())
