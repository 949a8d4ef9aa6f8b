"""The file datastore (`--datastore file:DIR`), the embedded default. Layout in the README:
`DIR/nodes/NAME.json` (Kubernetes-Node-shaped) and `DIR/meshconfig.yaml` (or `.json`).

Changes are reported by the kernel (inotify, file_watch.py) as they happen, whoever makes them; only the
named file is read again, and only when its signature (mtime, size, inode) changed. A slow full rescan stays
as the safety net (and is the only mechanism where inotify is refused). Every write is atomic, and each
agent writes only its own record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from meshd.core.codec import decode_meshconfig, decode_node, encode_node
from meshd.core.model import InvalidNode, MeshConfig, Node, NodeRecord, Snapshot
from meshd.datastore.file_watch import CONFIG, EVERYTHING, DirWatch, safe_close
from meshd.errors import ConfigError
from meshd.fsutil import write_atomic

log = logging.getLogger(__name__)
Signature = tuple[int, int, int]
CONFIG_NAMES = ("meshconfig.yaml", "meshconfig.yml", "meshconfig.json")


@dataclass(frozen=True, slots=True)
class _Entry:
    signature: Signature
    record: NodeRecord


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileDatastore:
    def __init__(
        self, directory: Path, *, register: Node | None = None, rescan_interval: float = 30.0
    ) -> None:
        """`rescan_interval`: seconds between two full scans, the safety net behind inotify."""
        self.directory = directory
        self.nodes_dir = directory / "nodes"
        self._register = register
        self._rescan_interval = rescan_interval
        self._watch: DirWatch | None = DirWatch(directory, self.nodes_dir, CONFIG_NAMES)
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._entries: dict[str, _Entry] = {}
        self._config = MeshConfig()
        self._config_sig: tuple[str, Signature] | None = None
        self.config_error: str | None = None
        """Why the latest MeshConfig file was rejected (the previous one stays in force), or None."""
        self.meshconfig_generation: int | None = None
        """The latest MeshConfig file's `metadata.generation` (0: none or unreadable; None: no file)."""
        self._synced = False
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.nodes_dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"file datastore {self.directory}: {exc.strerror}") from exc
        if self._register is not None:
            await asyncio.to_thread(self._write_registration, self._register)
        self._open_watch()
        await asyncio.to_thread(self._scan)
        # A MeshConfig that is there but cannot be used is no view at all: the defaults could mean clear
        # text where Required is meant. The first sync waits until it is readable and valid (or removed).
        self._synced = self.config_error is None
        if not self._synced:
            log.error("no first sync until the MeshConfig is fixed: %s", self.config_error)
        self._changed.set()
        self._tasks.append(asyncio.create_task(self._follow(), name="file-datastore-follow"))
        if self._watch is not None:
            self._tasks.append(asyncio.create_task(self._listen(self._watch), name="file-datastore-inotify"))

    def snapshot(self) -> Snapshot:
        records = tuple(e.record for _, e in sorted(self._entries.items()))
        return Snapshot(records, self._config, self._synced)

    @property
    def failure(self) -> str | None:
        """Never set: a scan that fails keeps the last good view and is retried on the next rescan."""
        return None

    async def wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def publish(self, node_name: str, annotations: Mapping[str, str | None]) -> None:
        await asyncio.to_thread(self._publish, node_name, annotations)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        safe_close(self._watch)

    def _open_watch(self) -> None:
        if self._watch is None:
            return
        try:
            self._watch.open()
        except OSError as exc:
            log.warning("no inotify (%s): the file datastore rescans every %ss", exc, self._rescan_interval)
            self._watch = None

    def _node_path(self, name: str) -> Path:
        return self.nodes_dir / f"{name}.json"

    def _write_registration(self, node: Node) -> None:
        """Create or refresh our own record: name, labels, pod CIDRs and address; annotations are kept."""
        path = self._node_path(node.name)
        obj = encode_node(node)
        old = _read_json(path)
        if isinstance(old, dict):
            meta = old.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            obj["metadata"]["annotations"] = dict(meta.get("annotations") or {})
            obj["metadata"]["labels"] = {
                **dict(meta.get("labels") or {}),
                **obj["metadata"].get("labels", {}),
            }
        if old != obj:
            write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
            log.info("registered node %s in %s", node.name, self.nodes_dir)

    def _publish(self, name: str, annotations: Mapping[str, str | None]) -> None:
        path = self._node_path(name)
        obj = _read_json(path)
        if not isinstance(obj, dict):
            raise ConfigError(f"cannot publish annotations: {path} is missing or not a JSON object")
        meta = obj.setdefault("metadata", {})
        current = dict(meta.get("annotations") or {})
        wanted = {k: v for k, v in current.items() if k not in annotations}
        wanted.update({k: v for k, v in annotations.items() if v is not None})
        if wanted == current:
            log.debug("annotations of %s unchanged", name)
            return
        meta["annotations"] = wanted
        write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
        log.info("published annotations of %s: %s", name, ", ".join(sorted(k for k in annotations)))

    async def _listen(self, watch: DirWatch) -> None:
        async for key in watch.keys():
            self._pending.add(key)
            self._wake.set()

    async def _follow(self) -> None:
        """Read again what inotify named (many events, one read each), or everything on the slow rescan."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races with the
            # event it waits for, and close() then waits for this task forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._rescan_interval):
                    await self._wake.wait()
            self._wake.clear()
            keys, self._pending = self._pending, set()
            try:
                if not keys or EVERYTHING in keys:
                    changed = await asyncio.to_thread(self._scan)
                else:
                    changed = await asyncio.to_thread(self._scan_keys, keys)
            except OSError as exc:
                log.warning("file datastore scan failed: %s", exc)
                continue
            if not self._synced and self.config_error is None:
                self._synced = changed = True
            if changed:
                self._changed.set()

    def _scan_keys(self, keys: Iterable[str]) -> bool:
        changed = False
        for key in keys:
            changed = (self._scan_config() if key == CONFIG else self._scan_node(key)) or changed
        return changed

    def _scan_node(self, name: str) -> bool:
        """Read nodes/NAME.json again if its signature changed; forget the node if the file is gone."""
        path = self._node_path(name)
        sig = _signature(path)
        old = self._entries.get(name)
        if sig is None:
            if old is None:
                return False
            del self._entries[name]
            log.info("node %s removed from %s", name, self.nodes_dir)
            return True
        if old is not None and old.signature == sig:
            return False
        self._entries[name] = _Entry(sig, _decode(name, _read_json(path)))
        return True

    def _scan(self) -> bool:
        changed = self._scan_config()
        with os.scandir(self.nodes_dir) as it:
            seen = {
                de.name[: -len(".json")]
                for de in it
                if not de.name.startswith(".") and de.name.endswith(".json")
            }
        for name in seen | self._entries.keys():
            changed = self._scan_node(name) or changed
        return changed

    def _scan_config(self) -> bool:
        found = next(
            ((n, s) for n in CONFIG_NAMES if (s := _signature(self.directory / n)) is not None), None
        )
        if found == self._config_sig:
            return False
        self._config_sig = found
        if found is None:
            self._config, self.config_error, self.meshconfig_generation = MeshConfig(), None, None
            log.info("no MeshConfig in %s: defaults apply", self.directory)
            return True
        path = self.directory / found[0]
        import yaml  # only where a MeshConfig file exists: an agent without one never loads it

        self.meshconfig_generation = 0
        try:
            obj = yaml.safe_load(path.read_text())
            self.meshconfig_generation = _generation(obj)
            config = decode_meshconfig(obj)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self.config_error = f"{path.name}: cannot read: {str(exc).splitlines()[0]}"
        except ConfigError as exc:
            self.config_error = f"{path.name}: {exc}"
        else:
            self._config, self.config_error = config, None
            log.info("MeshConfig from %s: mode %s, fallback %s", path.name, config.mode, config.fallback)
            return True
        log.error("rejected MeshConfig, the previous one stays in force: %s", self.config_error)
        return False


def _generation(obj: object) -> int:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    gen = meta.get("generation") if isinstance(meta, dict) else None
    return gen if isinstance(gen, int) else 0


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _decode(name: str, raw: object) -> NodeRecord:
    if not isinstance(raw, dict):
        return InvalidNode(name, "bad-record", f"nodes/{name}.json is not a JSON object")
    record = decode_node(raw)
    if isinstance(record, Node) and record.name != name:
        return InvalidNode(name, "bad-record", f"nodes/{name}.json holds node {record.name!r}")
    return record
