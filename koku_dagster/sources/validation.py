"""Checks that a source can back a provider before the provider is created or updated.

The rules are the provider type's (:mod:`koku_dagster.providers`); local (``*-local``) types read
directories, which must lie under ``KOKU_LOCAL_BUCKET_ROOTS`` (never a root itself). Reachability is
checked afterwards (``ingest/reachability.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from koku_dagster.providers import base, provider_type
from koku_dagster.sources.errors import ProviderValidationError


def validate_provider_settings(
    provider_type_name: str, credentials: dict[str, Any], data_source: dict[str, Any], local_roots: tuple[Path, ...]
) -> None:
    """:class:`ProviderValidationError` unless the settings can back a provider of their type."""
    ptype = provider_type(provider_type_name)
    try:
        ptype.validate_settings(credentials, data_source, local_roots)
    except base.SettingsError as exc:
        raise ProviderValidationError(str(exc)) from None
