"""Availability status written to `api_sources.status` and sent back to Platform Sources (Koku's wording).

Used by the sources integration and by ingestion, which both find a source (un)available."""

from __future__ import annotations

DUPLICATE_ACCOUNT_MESSAGE = (
    "Cost management does not allow duplicate accounts. An integration already exists with these details. "
    "Edit integration settings to configure a new integration."
)
MISSING_FIELDS_MESSAGE = "The source is missing one or more required fields."


def user_facing(error: str) -> str:
    """Koku's user-facing text for an internal error message."""
    if "one or more required fields is invalid/missing" in error.lower():
        return MISSING_FIELDS_MESSAGE
    return error


def build_status(error: str | None) -> dict[str, str]:
    if not error:
        return {"availability_status": "available", "availability_status_error": ""}
    return {"availability_status": "unavailable", "availability_status_error": user_facing(error)}
