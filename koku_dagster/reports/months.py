"""The UTC bounds of a billing month."""

from __future__ import annotations

from datetime import UTC, date, datetime


def month_range(month: date) -> tuple[datetime, datetime]:
    """[start, end) of ``month`` as UTC datetimes: its first instant and the next month's."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    return start, datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def month_bounds(month: date) -> dict[str, datetime]:
    """``month_start`` and ``month_end`` (UTC) for SQL parameters."""
    start, end = month_range(month)
    return {"month_start": start, "month_end": end}
