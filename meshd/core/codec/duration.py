"""Go-style durations (`"15s"`, `"2m"`, `"1h30m"`, `"1.5h"`, `"500ms"`) <-> seconds. Pure.

The grammar is Go's `time.ParseDuration` without a sign: one or more `<number><unit>`, units `ns`, `us`,
`µs`, `ms`, `s`, `m`, `h`. `PATTERN` is the same grammar for the CRD's OpenAPI schema.
"""

from __future__ import annotations

import re

PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds. Raises ValueError with a one-line reason."""
    if not isinstance(text, str) or not re.fullmatch(PATTERN, text):
        raise ValueError(f'{text!r} is not a duration like "20s", "2m" or "1h30m"')
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest of `Nh`, `Nm`, `Ns`, `Nms` that `parse_duration` reads back as `seconds`."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds else "0s"
