"""Go-style duration strings (`"15s"`, `"1h30m"`, `"720h"`, `"0s"`) <-> seconds. Pure.

Accepted: one or more `<number><unit>` terms, the number a decimal (`1.5h`), the unit one of `ns`, `us`,
`µs`, `ms`, `s`, `m`, `h`; no sign, no spaces, no days. `PATTERN` is the same grammar as a regular
expression for the CRD's OpenAPI schema.
"""

from __future__ import annotations

import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_WHOLE = re.compile(PATTERN)
MAX_TEXT = 64


class DurationError(ValueError):
    """Not a Go-style duration; the message says what is accepted."""


def parse_duration(text: object) -> float:
    """Seconds in `text` (e.g. `"2m30s"` -> 150.0). Raises DurationError."""
    if not isinstance(text, str):
        raise DurationError(f'expected a duration string like "15s" or "720h", got {type(text).__name__}')
    if len(text) > MAX_TEXT or not _WHOLE.fullmatch(text):
        raise DurationError(
            f"{text[:MAX_TEXT]!r} is not a duration: use numbers with units ns, us, ms, s, m, h "
            f'(e.g. "15s", "90m", "720h", "1h30m"; "0s" for never)'
        )
    return sum(float(number) * UNITS[unit] for number, unit in _TERM.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string `parse_duration` reads back as `seconds` (`"0s"`, `"15s"`, `"2m"`,
    `"720h"`, `"1500ms"`)."""
    if seconds < 0:
        raise DurationError(f"negative duration {seconds}")
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    if not seconds:
        return "0s"
    return f"{round(seconds * 1000)}ms" if (seconds * 1000).is_integer() else f"{seconds!r}s"
