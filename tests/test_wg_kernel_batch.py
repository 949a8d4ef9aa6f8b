"""Kernel WireGuard takes peers in batches: many peers per set-device message, one call to the seam per
batch; every change validated before anything is sent; a peer the kernel refuses is named while every
other peer is applied. Against the behavioural fake, and (`-m kernel`: scripts/vm) the real kernel."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Sequence
from dataclasses import replace

import pytest

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, PeerAction, RemovePeer, UpdatePeer
from meshd.core.model import Endpoint
from meshd.core.state import ObservedPeer, PeerSpec, WireGuardDeviceSpec
from meshd.errors import InvalidValueError, PermanentBatchError, TransientBatchError
from overlay.kernel import KernelWireGuard, PyrouteWireGuardNetlink, WireGuardNetlink
from overlay.kernel_peers import NAMED
from overlay.wg_msgs import GenlPeer
from tests.fakes.wg_genl import FakeWireGuardNetlink
from tests.support.kernel import kernel
from tests.support.wg import peers_of

NAME = "meshd0"


def peer(i: int, *, nets: int = 1, v6: bool = False, keepalive: int = 0) -> PeerSpec:
    """Peer `i` (0 <= i < 65536) with `nets` allowed IPs of its own and an IPv4 or IPv6 endpoint."""
    host = ipaddress.ip_address(f"2001:db8:18::{i:x}" if v6 else f"198.18.{i >> 8}.{i & 0xFF}")
    own = {ipaddress.ip_network(f"2001:db8:{i:x}:{j:x}::/64") for j in range(nets)}
    return PeerSpec(
        PublicKey(i.to_bytes(32, "big")), Endpoint(host, 51820), frozenset(own), keepalive, f"node{i}"
    )


def peers(n: int) -> list[PeerSpec]:
    return [peer(i, v6=i % 3 == 0, keepalive=i % 2 * 25) for i in range(1, n + 1)]


def comparable(seen: Sequence[ObservedPeer]) -> dict[PublicKey, tuple[object, ...]]:
    return {p.public_key: (p.endpoint, p.allowed_ips, p.persistent_keepalive, p.has_psk) for p in seen}


def wanted(specs: Sequence[PeerSpec]) -> dict[PublicKey, tuple[object, ...]]:
    return {p.public_key: (p.endpoint, p.allowed_ips, p.persistent_keepalive, False) for p in specs}


async def new_device(client: WireGuardNetlink, name: str = NAME) -> KernelWireGuard:
    key = PrivateKey.generate()
    dev = KernelWireGuard(name, key, client=client)
    await dev.create(WireGuardDeviceSpec(name, key.public_key(), 0, 1420))
    return dev


def mixed(before: Sequence[PeerSpec]) -> list[PeerAction]:
    """Adds, updates of each field (one moves an allowed IP from another peer), and removes."""
    a, b, c, d = before[:4]
    taken = next(iter(b.allowed_ips))
    return [
        AddPeer(peer(900, nets=3)),
        UpdatePeer(a.public_key, allowed_ips=a.allowed_ips | {taken}, node=a.node),  # the kernel moves it
        UpdatePeer(c.public_key, endpoint=Endpoint(ipaddress.ip_address("198.18.9.9"), 1), node=c.node),
        UpdatePeer(d.public_key, persistent_keepalive=7, node=d.node),
        RemovePeer(before[5].public_key, before[5].node),
        AddPeer(peer(901, v6=True)),
        RemovePeer(before[6].public_key),
        UpdatePeer(PublicKey(bytes([0xEE]) * 32), persistent_keepalive=5),  # no such peer: nothing created
    ]


# --- against the fake ---------------------------------------------------------------------------------


async def test_a_thousand_peers_go_in_few_messages_in_one_call() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    specs = peers(1000)
    await dev.apply_peers([AddPeer(p) for p in specs])
    (messages,) = fake.sends
    assert 1 < len(messages) <= 10
    assert comparable(await peers_of(dev)) == wanted(specs)


async def test_changes_are_validated_before_anything_is_sent() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    bad = replace(peer(7), persistent_keepalive=70000)
    with pytest.raises(InvalidValueError, match="keepalive"):
        await dev.apply_peers([*(AddPeer(p) for p in peers(50)), AddPeer(bad)])
    with pytest.raises(InvalidValueError, match="preshared key"):
        await dev.set_preshared_keys([(peer(1).public_key, bytes(32)), (peer(2).public_key, b"short")])
    assert fake.sends == [] and await peers_of(dev) == ()


async def test_a_refused_peer_is_named_and_every_other_peer_is_applied() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    specs = peers(500)
    fake.refuse[specs[16].public_key] = errno.EINVAL
    with pytest.raises(PermanentBatchError) as err:
        await dev.apply_peers([AddPeer(p) for p in specs])
    (failed,) = err.value.failed
    assert failed.startswith(f"adding peer node17 ({specs[16].public_key.short}...) on {NAME}: ")
    assert "errno 22" in failed
    assert comparable(await peers_of(dev)) == wanted(specs[:16] + specs[17:])
    first, again = fake.sends  # the batch, then the refused message's peers one per message
    assert len(again) == len(first[0]) and all(len(m) == 1 for m in again)


async def test_many_refusals_are_counted_past_the_named_ones_and_transient_ones_say_so() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    specs = peers(300)
    for p in specs[::10]:
        fake.refuse[p.public_key] = errno.EBUSY
    with pytest.raises(TransientBatchError) as err:
        await dev.apply_peers([AddPeer(p) for p in specs])
    assert len(err.value.failed) == NAMED + 1
    assert err.value.failed[0].startswith("adding peer node1 ")
    assert err.value.failed[-1].startswith(f"changing {30 - NAMED} more peers on {NAME}: ")
    assert len(await peers_of(dev)) == 270


async def test_a_mixed_batch_equals_the_changes_one_by_one() -> None:
    fake = FakeWireGuardNetlink()
    one, other = await new_device(fake, "meshd0"), await new_device(fake, "meshd1")
    before = peers(40)
    for dev in (one, other):
        await dev.apply_peers([AddPeer(p) for p in before])
    await one.apply_peers(mixed(before))
    for change in mixed(before):
        await other.apply_peers([change])
    assert comparable(await peers_of(one)) == comparable(await peers_of(other))
    assert len(await peers_of(one)) == 40


async def test_two_changes_of_one_peer_in_a_call_keep_their_order() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    a, b = peer(1), peer(2)
    await dev.apply_peers(
        [AddPeer(a), AddPeer(b), RemovePeer(a.public_key), UpdatePeer(b.public_key, persistent_keepalive=9)]
    )
    assert comparable(await peers_of(dev)) == {b.public_key: (b.endpoint, b.allowed_ips, 9, False)}


async def test_preshared_keys_of_many_peers_go_in_one_call() -> None:
    fake = FakeWireGuardNetlink()
    dev = await new_device(fake)
    specs = peers(400)
    await dev.apply_peers([AddPeer(p) for p in specs])
    await dev.set_preshared_keys([(p.public_key, bytes([p.public_key.raw[-1] or 1]) * 32) for p in specs])
    assert len(fake.sends) == 2 and len(fake.sends[1]) < 10
    assert all(p.has_psk for p in await peers_of(dev))


# --- the real kernel ----------------------------------------------------------------------------------


class RefusingOne(PyrouteWireGuardNetlink):
    """The real seam, but one peer goes out with a flag bit the kernel does not know: the kernel refuses
    it (EOPNOTSUPP), as it would refuse a peer meshd's checks cannot foresee."""

    def __init__(self, netns: str, key: PublicKey) -> None:
        super().__init__(netns)
        self.key = key.raw
        self.codes: list[list[int]] = []

    async def set_peers(self, name: str, messages: Sequence[Sequence[GenlPeer]]) -> list[int]:
        marked = [
            [replace(p, flags=p.flags | 0x80) if p.public_key == self.key else p for p in m] for m in messages
        ]
        codes = await super().set_peers(name, marked)
        self.codes.append(codes)
        return codes


@pytest.mark.netns
@kernel
def test_real_kernel_takes_1200_peers_in_one_apply(kernel_ns: str) -> None:
    async def scenario() -> None:
        dev = await new_device(PyrouteWireGuardNetlink(kernel_ns))
        specs = [*peers(1199), peer(5000, nets=1500)]  # one peer's allowed IPs span several messages
        await dev.apply_peers([AddPeer(p) for p in specs])
        assert comparable(await peers_of(dev)) == wanted(specs)
        await dev.set_preshared_keys([(p.public_key, bytes([7]) * 32) for p in specs[::2]])
        assert {p.public_key for p in await peers_of(dev) if p.has_psk} == {p.public_key for p in specs[::2]}
        await dev.delete()
        await dev.close()

    asyncio.run(scenario())


@pytest.mark.netns
@kernel
def test_real_kernel_mixed_batch_equals_the_changes_one_by_one(kernel_ns: str) -> None:
    async def scenario() -> None:
        client = PyrouteWireGuardNetlink(kernel_ns)
        one, other = await new_device(client, "meshd0"), await new_device(client, "meshd1")
        before = peers(300)
        for dev in (one, other):
            await dev.apply_peers([AddPeer(p) for p in before])
        await one.apply_peers(mixed(before))
        for change in mixed(before):
            await other.apply_peers([change])
        got = comparable(await peers_of(one))
        assert got == comparable(await peers_of(other))
        assert len(got) == 300 and PublicKey(bytes([0xEE]) * 32) not in got
        assert got[before[1].public_key][1] == set()  # its only allowed IP moved to peer 1
        await one.delete()
        await other.delete()
        await client.close()

    asyncio.run(scenario())


@pytest.mark.netns
@kernel
def test_real_kernel_refuses_one_peer_which_is_named_while_the_rest_apply(kernel_ns: str) -> None:
    async def scenario() -> None:
        specs = peers(600)
        bad = specs[250]
        client = RefusingOne(kernel_ns, bad.public_key)
        dev = await new_device(client)
        with pytest.raises(PermanentBatchError) as err:
            await dev.apply_peers([AddPeer(p) for p in specs])
        (failed,) = err.value.failed
        assert failed.startswith(f"adding peer node251 ({bad.public_key.short}...) on {NAME}: ")
        assert f"errno {errno.EOPNOTSUPP}" in failed
        first, again = client.codes
        assert first.count(errno.EOPNOTSUPP) == 1 and first.count(0) == len(first) - 1
        assert again.count(errno.EOPNOTSUPP) == 1 and again.count(0) == len(again) - 1
        assert comparable(await peers_of(dev)) == wanted([p for p in specs if p is not bad])
        await dev.delete()
        await dev.close()

    asyncio.run(scenario())
