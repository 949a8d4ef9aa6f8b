"""What /healthz and /readyz report. The loop replaces fields; the HTTP handlers, on the same loop, read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Health:
    alive: bool = True
    synced: bool = False
    last_pass_ok: bool = False
    detail: str = "starting"
    """Why the node is not ready, or "ok"."""
    warning: str | None = None
    """Something the operator should fix that does not make the node unready (e.g. a rejected MeshConfig)."""

    @property
    def ready(self) -> bool:
        return self.alive and self.synced and self.last_pass_ok

    def readyz(self) -> tuple[int, str]:
        """The /readyz answer: (HTTP status, one line)."""
        if not self.ready:
            return 503, self.detail
        return 200, "ok" if self.warning is None else f"ok; {self.warning}"
