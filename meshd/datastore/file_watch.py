"""Change notification for the file datastore: inotify (through asyncinotify) on `DIR` and `DIR/nodes`.

The kernel tells us which file changed, whoever changed it: an agent's atomic rename (MOVED_TO), an edit
in place (CLOSE_WRITE), a deletion, a `touch`. Each event names one key for the datastore to read again:
a node name, `CONFIG` for the MeshConfig files, or `EVERYTHING` when the kernel's queue overflowed or a
watched directory went away (then only a full scan is exact).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from asyncinotify import Event, Inotify, Mask

log = logging.getLogger(__name__)
CONFIG = "\0config"  # not a node name: "\0" can be in no file name
EVERYTHING = "\0all"
_FILES = Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE | Mask.ATTRIB
_GONE = Mask.Q_OVERFLOW | Mask.IGNORED | Mask.DELETE_SELF | Mask.MOVE_SELF


class DirWatch:
    """inotify watches on the datastore's directory and its `nodes/`, as a stream of keys to read again."""

    def __init__(self, directory: Path, nodes_dir: Path, config_names: Iterable[str]) -> None:
        self._directory, self._nodes_dir = directory, nodes_dir
        self._config_names = frozenset(config_names)
        self._inotify: Inotify | None = None

    def open(self) -> None:
        """Add the watches now, before the first scan, so that no change slips between the two.
        Raises OSError when the kernel refuses (no inotify, or the per-user watch limit is reached)."""
        inotify = Inotify()
        try:
            inotify.add_watch(self._directory, _FILES | Mask.ONLYDIR)
            inotify.add_watch(self._nodes_dir, _FILES | Mask.ONLYDIR)
        except BaseException:
            inotify.close()
            raise
        self._inotify = inotify

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    async def keys(self) -> AsyncIterator[str]:
        """Forever: one key per relevant event, as the kernel reports them."""
        if self._inotify is None:
            raise RuntimeError("DirWatch.open() first")
        async for event in self._inotify:
            key = self._key(event)
            if key is not None:
                yield key

    def _key(self, event: Event) -> str | None:
        if event.mask & _GONE:
            log.warning("file datastore watch: %s, scanning everything", event.mask)
            return EVERYTHING
        name = event.name
        if name is None:
            return None
        text = str(name)
        if event.watch is not None and event.watch.path == self._nodes_dir:
            if text.startswith(".") or not text.endswith(".json"):
                return None  # a writer's temp file; its rename is the event that counts
            return text[: -len(".json")]
        return CONFIG if text in self._config_names else None


def safe_close(watch: DirWatch | None) -> None:
    if watch is not None:
        with contextlib.suppress(OSError):
            watch.close()
