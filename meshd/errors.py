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
