"""All MeshNodes, kept by a list+watch (k8s_watch.Reflector) for the agent holding the MeshConfig-status
lease: after the first list only changed MeshNodes cross the wire, where listing 1000 MeshNodes of 1000
peers each would move ~100 MB every round."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from meshd.datastore.k8s_api import MESHNODES, KubeApi, Obj
from meshd.datastore.k8s_watch import Reflector
from meshd.datastore.settings import WatchSettings

log = logging.getLogger(__name__)


class MeshNodeCache:
    def __init__(self, api: KubeApi, watch: WatchSettings | None = None, *, first_list: float = 30.0) -> None:
        """`first_list`: seconds `items()` waits for the first list before it gives up (and tries again)."""
        self._api, self._watch, self._first_list = api, watch or WatchSettings(), first_list
        self._items: dict[str, Obj] = {}
        self._listed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped_at = 0.0
        self.retry_after = 60.0

    async def items(self) -> list[dict[str, Any]]:
        """Every MeshNode; the first call starts the watch and waits for its first list. A watch that
        stopped for good (e.g. 404: no MeshNode CRD) is started again only after `retry_after` seconds."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.done() and loop.time() - self._stopped_at < self.retry_after:
            raise RuntimeError(f"the MeshNode watch stopped: {self._task.exception()}")
        if self._task is None or self._task.done():
            self._listed.clear()
            reflector = Reflector(
                self._api,
                MESHNODES,
                on_list=self._on_list,
                on_event=self._on_event,
                on_error=lambda kind: None,
                backoff=self._watch.backoff,
                watch_timeout=self._watch.watch_timeout,
                resync=self._watch.relist,
            )
            self._task = asyncio.create_task(reflector.run(), name="k8s-watch-meshnodes")
        listed = asyncio.ensure_future(self._listed.wait())
        await asyncio.wait(
            [listed, self._task], timeout=self._first_list, return_when=asyncio.FIRST_COMPLETED
        )
        listed.cancel()
        if not self._listed.is_set():
            if self._task.done():
                self._stopped_at = loop.time()
                raise RuntimeError(f"the MeshNode watch stopped: {self._task.exception()}")
            raise TimeoutError("listing MeshNodes took too long")
        return [self._items[k] for k in sorted(self._items)]

    def _on_list(self, items: list[Obj]) -> None:
        self._items = {str((o.get("metadata") or {}).get("name")): o for o in items}
        self._listed.set()

    def _on_event(self, kind: str, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        if kind == "DELETED":
            self._items.pop(name, None)
        else:
            self._items[name] = obj

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
