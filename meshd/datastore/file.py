"""The file datastore (`--datastore file:DIR`), the embedded default. Layout in the README:
`DIR/nodes/NAME.json` (Kubernetes-Node-shaped) and `DIR/meshconfig.yaml` (or `.json`).

Changes are found by polling file signatures (mtime, size, inode) a few times a second, in a thread;
only changed files are parsed again. Every write is atomic, and each agent writes only its own record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from meshd.core.codec import decode_meshconfig, decode_node, encode_node
from meshd.core.model import InvalidNode, MeshConfig, Node, NodeRecord, Snapshot
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
    def __init__(self, directory: Path, *, register: Node | None = None, poll_interval: float = 0.25) -> None:
        self.directory = directory
        self.nodes_dir = directory / "nodes"
        self._register = register
        self._poll_interval = poll_interval
        self._entries: dict[str, _Entry] = {}
        self._config = MeshConfig()
        self._config_sig: tuple[str, Signature] | None = None
        self.config_error: str | None = None
        """Why the latest MeshConfig file was rejected (the previous one stays in force), or None."""
        self._synced = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.nodes_dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"file datastore {self.directory}: {exc.strerror}") from exc
        if self._register is not None:
            await asyncio.to_thread(self._write_registration, self._register)
        await asyncio.to_thread(self._scan)
        # A MeshConfig that is there but cannot be used is no view at all: the defaults could mean clear
        # text where Required is meant. The first sync waits until it is readable and valid (or removed).
        self._synced = self.config_error is None
        if not self._synced:
            log.error("no first sync until the MeshConfig is fixed: %s", self.config_error)
        self._changed.set()
        self._task = asyncio.create_task(self._poll(), name="file-datastore-poll")

    def snapshot(self) -> Snapshot:
        records = tuple(e.record for _, e in sorted(self._entries.items()))
        return Snapshot(records, self._config, self._synced)

    @property
    def failure(self) -> str | None:
        """Never set: a scan that fails keeps the last good view and is retried on the next poll."""
        return None

    async def wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def publish(self, node_name: str, annotations: Mapping[str, str | None]) -> None:
        await asyncio.to_thread(self._publish, node_name, annotations)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                changed = await asyncio.to_thread(self._scan)
            except OSError as exc:
                log.warning("file datastore scan failed: %s", exc)
                continue
            if not self._synced and self.config_error is None:
                self._synced = changed = True
            if changed:
                self._changed.set()

    def _scan(self) -> bool:
        changed = self._scan_config()
        seen: set[str] = set()
        with os.scandir(self.nodes_dir) as it:
            for de in it:
                if de.name.startswith(".") or not de.name.endswith(".json"):
                    continue
                name = de.name[: -len(".json")]
                seen.add(name)
                sig = _signature(Path(de.path))
                old = self._entries.get(name)
                if sig is None or (old is not None and old.signature == sig):
                    continue
                self._entries[name] = _Entry(sig, _decode(name, _read_json(Path(de.path))))
                changed = True
        for gone in set(self._entries) - seen:
            del self._entries[gone]
            log.info("node %s removed from %s", gone, self.nodes_dir)
            changed = True
        return changed

    def _scan_config(self) -> bool:
        found = next(
            ((n, s) for n in CONFIG_NAMES if (s := _signature(self.directory / n)) is not None), None
        )
        if found == self._config_sig:
            return False
        self._config_sig = found
        if found is None:
            self._config, self.config_error = MeshConfig(), None
            log.info("no MeshConfig in %s: defaults apply", self.directory)
            return True
        path = self.directory / found[0]
        try:
            obj = yaml.safe_load(path.read_text())
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
