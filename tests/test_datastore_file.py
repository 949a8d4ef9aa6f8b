"""The file datastore: layout, registration, atomic publish, change pickup (inotify: no test here leans on
the safety rescan), bad MeshConfig kept out."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meshd.core.codec import encode_node
from meshd.core.model import EncryptionMode, InvalidNode, Node
from meshd.datastore.file import FileDatastore


def _me(name: str = "a", i: int = 1) -> Node:
    return Node(
        name,
        ipaddress.ip_address(f"198.18.0.{i}"),
        (ipaddress.ip_network(f"198.19.{i}.0/24"),),
        labels=(("pool", "x"),),
    )


async def _wait(ds: FileDatastore) -> None:
    await asyncio.wait_for(ds.wait_changed(), 10)


async def test_registers_and_publishes(tmp_path: Path) -> None:
    ds = FileDatastore(tmp_path, register=_me(), rescan_interval=3600)
    await ds.start()
    try:
        snap = ds.snapshot()
        assert snap.synced
        assert [n.name for n in snap.nodes] == ["a"]
        raw = json.loads((tmp_path / "nodes" / "a.json").read_text())
        assert raw["spec"]["podCIDRs"] == ["198.19.1.0/24"]
        await ds.publish("a", {"meshd.io/capabilities": "vxlan", "meshd.io/endpoint": None})
        raw = json.loads((tmp_path / "nodes" / "a.json").read_text())
        assert raw["metadata"]["annotations"] == {"meshd.io/capabilities": "vxlan"}
        before = (tmp_path / "nodes" / "a.json").stat().st_mtime_ns
        await ds.publish("a", {"meshd.io/capabilities": "vxlan"})
        assert (tmp_path / "nodes" / "a.json").stat().st_mtime_ns == before, "an equal publish must not write"
        assert not [p for p in (tmp_path / "nodes").iterdir() if p.name.startswith(".")], "temp files left"
    finally:
        await ds.close()


async def test_restart_keeps_annotations(tmp_path: Path) -> None:
    ds = FileDatastore(tmp_path, register=_me())
    await ds.start()
    await ds.publish("a", {"meshd.io/capabilities": "vxlan"})
    await ds.close()
    ds2 = FileDatastore(tmp_path, register=_me())
    await ds2.start()
    await ds2.close()
    raw = json.loads((tmp_path / "nodes" / "a.json").read_text())
    assert raw["metadata"]["annotations"] == {"meshd.io/capabilities": "vxlan"}


async def test_picks_up_changes_and_deletions(tmp_path: Path) -> None:
    ds = FileDatastore(tmp_path, register=_me(), rescan_interval=3600)
    await ds.start()
    await _wait(ds)  # the start itself
    try:
        other = FileDatastore(tmp_path, register=_me("b", 2))
        await other.start()
        await other.close()
        await _wait(ds)
        assert sorted(n.name for n in ds.snapshot().nodes) == ["a", "b"]
        (tmp_path / "nodes" / "b.json").unlink()
        await _wait(ds)
        assert [n.name for n in ds.snapshot().nodes] == ["a"]
        (tmp_path / "nodes" / "c.json").write_text("{not json")
        await _wait(ds)
        bad = [n for n in ds.snapshot().nodes if n.name == "c"]
        assert bad and isinstance(bad[0], InvalidNode) and bad[0].reason == "bad-record"
    finally:
        await ds.close()


@pytest.mark.parametrize("suffix", ["yaml", "json"])
async def test_meshconfig_and_bad_config_keeps_previous(tmp_path: Path, suffix: str) -> None:
    ds = FileDatastore(tmp_path, rescan_interval=3600)
    await ds.start()
    await _wait(ds)
    try:
        assert ds.snapshot().config.mode is EncryptionMode.ENABLED
        assert ds.meshconfig_generation is None  # no MeshConfig: no status to report on
        good = {"apiVersion": "meshd.io/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
                "spec": {"encryption": {"mode": "Disabled"}}}  # fmt: skip
        (tmp_path / f"meshconfig.{suffix}").write_text(json.dumps(good))
        await _wait(ds)
        assert ds.snapshot().config.mode is EncryptionMode.DISABLED
        assert ds.meshconfig_generation == 0  # no metadata.generation in the file
        good["metadata"] = {"name": "default", "generation": 4}
        (tmp_path / f"meshconfig.{suffix}").write_text(json.dumps(good))
        await _wait(ds)
        assert ds.meshconfig_generation == 4
        bad = {**good, "spec": {"encryption": {"mode": "Sometimes"}}}
        (tmp_path / f"meshconfig.{suffix}").write_text(json.dumps(bad))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if ds.config_error:
                break
        assert ds.config_error and "mode" in ds.config_error
        assert ds.meshconfig_generation == 4  # the rejected file's generation is the one reported on
        assert ds.snapshot().config.mode is EncryptionMode.DISABLED, (
            "a bad config must not replace a good one"
        )
        (tmp_path / f"meshconfig.{suffix}").unlink()
        await _wait(ds)
        assert ds.snapshot().config.mode is EncryptionMode.ENABLED
    finally:
        await ds.close()


async def test_no_first_sync_while_the_meshconfig_cannot_be_read(tmp_path: Path) -> None:
    """Defaults in place of an unreadable MeshConfig could mean clear text where Required is meant."""
    (tmp_path / "meshconfig.yaml").write_text("spec: [unclosed\n")
    ds = FileDatastore(tmp_path, register=_me(), rescan_interval=3600)
    await ds.start()
    try:
        await asyncio.sleep(0.3)
        assert not ds.snapshot().synced and ds.config_error
        (tmp_path / "meshconfig.yaml").write_text("spec: {encryption: {mode: Required}}\n")
        for _ in range(100):
            if ds.snapshot().synced:
                break
            await _wait(ds)
        snap = ds.snapshot()
        assert snap.synced and snap.config.mode is EncryptionMode.REQUIRED
    finally:
        await ds.close()


async def test_changes_by_another_process_are_seen_without_any_rescan(tmp_path: Path) -> None:
    """With the safety rescan an hour away, only the kernel's notifications can tell the datastore: a record
    renamed into place by another process, edited in place, and deleted is followed each time."""
    ds = FileDatastore(tmp_path, register=_me(), rescan_interval=3600)
    await ds.start()
    await _wait(ds)
    record = json.dumps(encode_node(_me("b", 2)))
    other = tmp_path / "nodes" / "b.json"
    try:
        script = "import os, sys; open(sys.argv[1] + '.tmp', 'w').write(sys.argv[2]); os.replace(sys.argv[1] + '.tmp', sys.argv[1])"
        await _run(sys.executable, "-c", script, str(other), record)
        await _until(ds, lambda names: names == ["a", "b"])
        edited = json.loads(record)
        edited["metadata"]["labels"] = {"pool": "edited"}
        await _run("sh", "-c", f"cat > {other}", stdin=json.dumps(edited))  # in place, like an editor
        await _until(
            ds, lambda _: any(n.name == "b" and n.labels == (("pool", "edited"),) for n in _nodes(ds))
        )
        await _run("rm", str(other))
        await _until(ds, lambda names: names == ["a"])
    finally:
        await ds.close()


def _nodes(ds: FileDatastore) -> list[Node]:
    return [n for n in ds.snapshot().nodes if isinstance(n, Node)]


async def _until(ds: FileDatastore, cond: Callable[[list[str]], bool]) -> None:
    while not cond(sorted(n.name for n in ds.snapshot().nodes)):
        await _wait(ds)


async def _run(*argv: str, stdin: str | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE)
    await proc.communicate(stdin.encode() if stdin is not None else None)
    assert proc.returncode == 0, argv
