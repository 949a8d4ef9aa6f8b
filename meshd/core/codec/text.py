"""Small helpers for codec messages: JSON type names and short one-line renderings of values. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_DETAIL = 200

_JSON_TYPES: tuple[tuple[Any, str], ...] = (
    (bool, "a boolean"),  # before int: a bool is not an integer here
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (Mapping, "an object"),
    (list | tuple, "a list"),
)


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages: "a string", "null", "an object"..."""
    if value is None:
        return "null"
    return next((name for t, name in _JSON_TYPES if isinstance(value, t)), f"a {type(value).__name__}")


def show(value: object, limit: int = 40) -> str:
    """A short one-line rendering of a scalar value for messages (never raises, never multi-line)."""
    if isinstance(value, str):
        return repr(value[:limit] + "...") if len(value) > limit else repr(value)
    if isinstance(value, bool) or value is None:
        return json_type(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**limit else "a very large integer"
    if isinstance(value, float):
        return repr(value)[:limit]
    return json_type(value)


def one_line(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
