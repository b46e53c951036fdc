"""Field values as the service reads them from request bodies and writes them in answers and events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from koku_devtools.platform_sources.errors import bad_request

AVAILABILITY_STATUSES = frozenset({"available", "in_progress", "partially_available", "unavailable"})
#: ``created_at`` of authentications, which the service does not keep.
ZERO_TIME = "0001-01-01T00:00:00Z"


def utcnow() -> datetime:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def rest_time(value: datetime | None) -> str | None:
    """RFC 3339 as in REST responses."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time(value: datetime | None) -> str | None:
    """``YYYY-MM-DD hh:mm:ss UTC`` as in Kafka event bodies."""
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(value: Any) -> datetime | None:
    """Parse ``2006-01-02 15:04:05 MST`` (or RFC 3339); None when unparseable, like the service."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def to_id(value: Any, name: str) -> int:
    """Accept an id sent as a JSON number or string."""
    if isinstance(value, bool):
        raise bad_request(f"invalid {name}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value.strip().isdigit():
        result = int(value.strip())
    else:
        raise bad_request(f"invalid {name}")
    if result < 1:
        raise bad_request(f"invalid {name}")
    return result


def optional_str(body: dict[str, Any], key: str) -> str | None:
    """``body[key]`` when it is a string, None when absent or null; 400 otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def optional_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A copy of ``body[key]`` when it is an object, None when absent or null; 400 otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"{key} must be an object")
    return copy.deepcopy(value)


def availability_status(body: dict[str, Any]) -> str | None:
    """The ``availability_status`` sent, if any; 400 when it is not one the service knows."""
    value = body.get("availability_status")
    if value is None:
        return None
    if value not in AVAILABILITY_STATUSES:
        raise bad_request(f"invalid availability status: {value!r}")
    return str(value)


def without_empty(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without null and empty-string values (the REST forms omit them)."""
    return {k: v for k, v in data.items() if v is not None and v != ""}
