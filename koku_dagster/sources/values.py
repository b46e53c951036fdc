"""Checks of values that come from outside (Kafka messages, Platform Sources answers).

Every value that reaches the database or a URL passes one of these first, so what the database
or the path could not hold is refused where it enters, with a fixed reason that never echoes it.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

#: Largest id a ``BIGINT`` column holds.
MAX_ID = 2**63 - 1
#: Longest text kept from an outside value (names, usernames, references, JSON strings).
MAX_TEXT = 4096
#: JSON objects from outside (application and authentication ``extra``): nesting depth, keys, items.
MAX_JSON_DEPTH = 8
MAX_JSON_KEY = 256
MAX_JSON_ITEMS = 2000


class BadValue(ValueError):
    """An outside value that cannot be used; the message names the field, never the value."""


def parse_id(value: Any) -> int | None:
    """A positive id that fits 64 bits, from a JSON number or a decimal string; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and 0 < len(value.strip()) <= 19 and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if 0 < number <= MAX_ID else None


def require_id(value: Any, field: str) -> int:
    number = parse_id(value)
    if number is None:
        raise BadValue(f"{field} is missing or not a valid id")
    return number


def optional_id(value: Any, field: str) -> int | None:
    return None if value in (None, "") else require_id(value, field)


def clean_text(value: str, field: str, max_len: int = MAX_TEXT) -> str:
    """``value`` unchanged if it holds no NUL, no lone surrogate and at most ``max_len`` characters."""
    if len(value) > max_len:
        raise BadValue(f"{field} is longer than {max_len} characters")
    if "\x00" in value:
        raise BadValue(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadValue(f"{field} is not valid text") from None
    return value


def optional_text(value: Any, field: str, max_len: int = MAX_TEXT) -> str | None:
    """None when absent; a clean string; :class:`BadValue` for anything else."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue(f"{field} is not a string")
    return clean_text(value, field, max_len)


def optional_uuid(value: Any, field: str) -> str | None:
    """A uuid in lowercase hyphenated form (what a 36-character column holds), or None when absent."""
    text = optional_text(value, field, 36)
    if not text:
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise BadValue(f"{field} is not a uuid") from None
    if str(parsed) != text.lower():
        raise BadValue(f"{field} is not a uuid in hyphenated form")
    return str(parsed)


def clean_json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object any database can store: string keys, clean strings, finite numbers, bounded size."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadValue(f"{field} is not an object")
    budget = [MAX_JSON_ITEMS]
    _check_json(value, field, 0, budget)
    return value


def _check_json(value: Any, field: str, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise BadValue(f"{field} holds too many values")
    if isinstance(value, str):
        clean_text(value, field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadValue(f"{field} holds a number that is not finite")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
        raise BadValue(f"{field} holds a number that is too large")
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            raise BadValue(f"{field} is nested too deeply")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                if not isinstance(key, str):
                    raise BadValue(f"{field} has a key that is not a string")
                clean_text(key, field, MAX_JSON_KEY)
            _check_json(item, field, depth + 1, budget)
    elif value is not None and not isinstance(value, bool | int | float):
        raise BadValue(f"{field} holds a value that is not JSON")
