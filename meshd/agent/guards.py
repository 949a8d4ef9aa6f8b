"""Guards that outlive the agent and the kernel's routing table: the guarded pod CIDRs are saved next to
the key file (the key directory survives reboots; --run-dir may not), so that a starting agent puts them
back before the datastore's first full sync. Before that sync guards are only ever added: they never open
a path. Also: Required violations (foreign routes past a guard) in logs and metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from meshd.agent.metrics import Metrics
from meshd.core.guard import GuardTable, guard_violations
from meshd.core.model import IPNetwork
from meshd.core.state import ActualState, DesiredState
from meshd.fsutil import write_atomic

log = logging.getLogger(__name__)


def guard_file(key_file: Path) -> Path:
    """Where the guarded CIDRs are kept: `private.key` -> `private.guards.json`, same directory."""
    return key_file.with_name(key_file.stem + ".guards.json")


def load_saved(path: Path) -> frozenset[IPNetwork]:
    """The saved CIDRs; none when the file is missing. A damaged file is reported and yields none."""
    try:
        doc = json.loads(path.read_bytes())
        return frozenset(ipaddress.ip_network(c) for c in doc["guards"])
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the saved Required guards in %s (%s): none are restored", path, exc)
        return frozenset()


class SavedGuards:
    """A GuardTable that keeps `path` a superset of the guards it holds: saved before a guard is added,
    dropped from the file after it is removed. Writes the file only when the set changes."""

    def __init__(self, table: GuardTable, path: Path) -> None:
        self.table = table
        self.path = path
        self._saved = load_saved(path)

    async def observe(self) -> frozenset[IPNetwork]:
        found = await self.table.observe()
        if not found <= self._saved:  # e.g. guards from before the file existed: never forget one
            await self._save(self._saved | found)
        return found

    async def add_all(self, dsts: Sequence[IPNetwork]) -> None:
        """The file first (one write for the whole batch), then the kernel."""
        if not self._saved.issuperset(dsts):
            await self._save(self._saved.union(dsts))
        await self.table.add_all(dsts)

    async def remove_all(self, dsts: Sequence[IPNetwork]) -> None:
        """The kernel first, then the file (one write for the whole batch)."""
        await self.table.remove_all(dsts)
        if not self._saved.isdisjoint(dsts):
            await self._save(self._saved.difference(dsts))

    async def install_saved(self) -> int:
        """Before the first sync: add every saved guard the kernel lacks (after a reboot, all of them)."""
        missing = self._saved - await self.table.observe()
        await self.table.add_all(sorted(missing, key=str))
        if missing:
            log.info(
                "restored %d Required guard(s) saved in %s before the first sync", len(missing), self.path
            )
        return len(missing)

    async def _save(self, guards: frozenset[IPNetwork]) -> None:
        """A file that cannot be written is reported, never a reason to leave a guard out of the kernel."""
        self._saved = guards
        data = json.dumps({"guards": sorted(map(str, guards))}, indent=1) + "\n"
        try:
            if guards:
                await asyncio.to_thread(write_atomic, self.path, data.encode())
            else:
                await asyncio.to_thread(self.path.unlink, missing_ok=True)
        except OSError as exc:
            log.error("cannot save the Required guards in %s (%s): a reboot would lose them", self.path, exc)


def report_guards(metrics: Metrics, desired: DesiredState, actual: ActualState, seen: set[str]) -> None:
    """Required violations, loudly: an ERROR log line when one appears (and a note when it is gone), the
    `meshd_required_violations` gauge; guards in place in `meshd_required_guards`."""
    problems = guard_violations(desired.guards, actual.foreign_routes)
    current = {p.detail for p in problems}
    for detail in sorted(current - seen):
        log.error("Required violation: %s", detail)
    for detail in sorted(seen - current):
        log.info("Required violation resolved: %s", detail)
    seen.clear()
    seen.update(current)
    metrics.required_violations.set(len(problems))
    metrics.required_guards.set(len(actual.guards & desired.guards))
