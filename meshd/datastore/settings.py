"""Settings of the Kubernetes datastore (a branch of the agent's settings tree), kept free of heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshd.retry import Backoff


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How the Kubernetes datastore follows the API server and retries its requests."""

    watch_timeout: int = 300
    """Seconds the server keeps one watch open (the watch then resumes from the last resourceVersion)."""
    relist: float = 0.0
    """Relist this often in seconds (0: only when a resume point expires)."""
    request_timeout: float = 30.0
    """Seconds one API request may take."""
    publish_attempts: int = 5
    """Conflicting (409) writes of our annotations before a pass gives up and retries later."""
    backoff: Backoff = field(default_factory=Backoff)
    """Retry timing of connection errors, 429 and 5xx answers."""
