"""meshd's error hierarchy. Retry only TransientError; say what was being done when it failed."""


class MeshdError(Exception):
    """Base of every error meshd raises on purpose."""


class TransientError(MeshdError):
    """May succeed if tried again (API server unreachable, 429/5xx, EBUSY, socket not yet there)."""


class PermanentError(MeshdError):
    """Will fail again the same way until something changes (bad input, permission, missing feature)."""


class ConfigError(PermanentError):
    """Bad flags, settings or files given by the user. The CLI exits 2 with the one-line message."""


class UnsupportedError(PermanentError):
    """The kernel or the machine lacks a feature (WireGuard module, ipip, wireguard-go binary)."""


class InvalidValueError(PermanentError, ValueError):
    """A value meshd was asked to write is malformed (a port out of range, a non-network allowed IP). Also a
    ValueError: it is one, found before anything was sent."""


class BatchError(MeshdError):
    """Some requests of a batch failed and the others were applied. `failed` says, for each failed request,
    what it was doing and why it failed."""

    def __init__(self, failed: tuple[str, ...]) -> None:
        super().__init__("; ".join(failed))
        self.failed = failed


class TransientBatchError(BatchError, TransientError):
    """Every failure of the batch may succeed if tried again."""


class PermanentBatchError(BatchError, PermanentError):
    """At least one failure of the batch will fail again the same way."""
