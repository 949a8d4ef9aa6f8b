"""Retry timing shared by the Kubernetes watch and the reconcile scheduler: capped exponential backoff
with jitter, computed by tenacity."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity.wait import wait_exponential_jitter


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry timing for transient errors, in seconds: the first delay is `initial`, each further attempt
    doubles it up to `maximum`, and up to `jitter` is added at random so that many nodes do not retry in
    step. A server's Retry-After above `max_retry_after` is capped."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0

    def wait(self) -> wait_exponential_jitter:
        """The tenacity wait strategy for these timings."""
        return wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.jitter)
