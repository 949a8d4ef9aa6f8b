"""The file datastore's status store (`--datastore file:DIR`): MeshNodes at `DIR/meshnodes/NAME.json`, the
MeshConfig status at `DIR/meshconfig-status.json`, Events at `DIR/events/NAME.json`, each written
atomically (temp file + rename) and only when its content changed.

One writer for the MeshConfig status: the agent holding an exclusive `flock` on `DIR/meshconfig-status.lock`
(kept open for the agent's life). The kernel releases it when that agent dies, however it dies, so the next
agent that tries takes over at once; nobody has to wait out a lease. (A directory shared between hosts
needs a filesystem with working `flock`, e.g. local disks or NFSv4.)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshd.core.meshnode import meshnode_object, rfc3339
from meshd.core.ports import EventRecord
from meshd.datastore.file import CONFIG_NAMES
from meshd.datastore.k8s_events import event_name, event_object
from meshd.fsutil import write_atomic

STATUS_FILE, LOCK_FILE = "meshconfig-status.json", "meshconfig-status.lock"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _write_if_changed(path: Path, obj: Mapping[str, Any]) -> bool:
    if read_json(path) == obj:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
    return True


def list_meshnodes(directory: Path) -> list[dict[str, Any]]:
    """Every MeshNode in DIR/meshnodes (what `meshd graph` and the MeshConfig status read)."""
    found = sorted((directory / "meshnodes").glob("*.json"))
    return [obj for p in found if not p.name.startswith(".") and (obj := read_json(p)) is not None]


class FileStatusStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None

    async def write_meshnode(self, name: str, status: Mapping[str, Any]) -> None:
        obj = meshnode_object(name, None, status)
        await asyncio.to_thread(_write_if_changed, self.directory / "meshnodes" / f"{name}.json", obj)

    async def read_meshnode(self, name: str) -> dict[str, Any] | None:
        obj = await asyncio.to_thread(read_json, self.directory / "meshnodes" / f"{name}.json")
        status = (obj or {}).get("status")
        return status if isinstance(status, dict) else None

    async def list_meshnodes(self) -> list[dict[str, Any]]:
        """The MeshNodes. The lock holder first removes those whose node record is gone (in Kubernetes the
        owner reference does that)."""
        if self._lock_fd is not None:
            await asyncio.to_thread(self._prune)
        return await asyncio.to_thread(list_meshnodes, self.directory)

    def _prune(self) -> None:
        for path in (self.directory / "meshnodes").glob("*.json"):
            if not (self.directory / "nodes" / path.name).exists():
                path.unlink(missing_ok=True)

    async def hold_lease(self, holder: str, *, duration: float) -> bool:
        """`duration` does not matter here: the lock lasts as long as this process."""
        if self._lock_fd is None:
            self._lock_fd = await asyncio.to_thread(self._try_lock)
        return self._lock_fd is not None

    def _try_lock(self) -> int | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def meshconfig_generation(self) -> int | None:
        return await asyncio.to_thread(self._generation)

    def _generation(self) -> int | None:
        for name in CONFIG_NAMES:
            try:
                text = (self.directory / name).read_text()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                return 0
            import yaml  # only where a MeshConfig file exists

            try:
                obj = yaml.safe_load(text)
            except yaml.YAMLError:
                return 0
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            gen = meta.get("generation") if isinstance(meta, dict) else None
            return gen if isinstance(gen, int) else 0
        return None

    async def write_meshconfig_status(self, status: Mapping[str, Any]) -> None:
        await asyncio.to_thread(_write_if_changed, self.directory / STATUS_FILE, {"status": dict(status)})

    async def record_event(self, event: EventRecord, *, count: int, first: float, last: float) -> None:
        obj = event_object(event, count=count, first=rfc3339(first), last=rfc3339(last), uid=None)
        await asyncio.to_thread(
            _write_if_changed, self.directory / "events" / f"{event_name(event)}.json", obj
        )

    async def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
