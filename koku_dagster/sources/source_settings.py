"""Credentials and billing source of a source, fetched from Platform Sources as its provider type says.

What to fetch and how to shape it is declared by the type (:mod:`koku_dagster.providers`); the
Platform Sources calls are made here.
"""

from __future__ import annotations

from typing import Any

from koku_dagster.providers import REGISTRY, provider_type
from koku_dagster.providers.base import CredentialInputs, CredentialsError
from koku_dagster.sources.errors import SourceDataError
from koku_dagster.sources.model import SourceDetails, Tenant
from koku_dagster.sources.platform import PlatformView


def _credential_inputs(
    type_name: str, source_id: int, tenant: Tenant, platform: PlatformView, details: SourceDetails | None
) -> CredentialInputs:
    """Fetch what the type's :class:`~koku_dagster.providers.base.CredentialFetch` asks for."""
    ptype = provider_type(type_name)
    fetch = ptype.credential_fetch
    if fetch.source_ref:
        details = details or platform.source_details(source_id, tenant)
        return CredentialInputs(source_ref=details.source_ref)
    auth = platform.authentication(source_id, ptype.cost_authtype, tenant)
    if auth is None:
        raise SourceDataError(f"No {ptype.cost_authtype} authentication for source")
    application = platform.application(source_id, tenant) if fetch.application else None
    wants_password = fetch.password == "always" or (fetch.password == "without_username" and not auth.username)
    return CredentialInputs(
        username=auth.username,
        password=platform.authentication_password(source_id, auth.id, tenant) if wants_password else None,
        auth_extra=auth.extra,
        application_extra=application.extra if application else {},
    )


def build_credentials(
    provider_type_name: str, source_id: int, tenant: Tenant, platform: PlatformView, details: SourceDetails | None
) -> dict[str, Any]:
    """``authentication.credentials`` for a source; :class:`SourceDataError` when incomplete."""
    inputs = _credential_inputs(provider_type_name, source_id, tenant, platform, details)
    try:
        return provider_type(provider_type_name).shape_credentials(inputs)
    except CredentialsError as exc:
        raise SourceDataError(str(exc)) from None


def build_data_source(
    provider_type_name: str, source_id: int, tenant: Tenant, platform: PlatformView
) -> dict[str, Any]:
    """``billing_source.data_source`` from the cost-management application's ``extra``."""
    application = platform.application(source_id, tenant)
    if application is None:
        raise SourceDataError("No application data for source")
    extra = application.extra
    ptype = provider_type(provider_type_name)
    required = ptype.required_billing_keys
    missing = [key for key in required if not extra.get(key)]
    if missing:
        raise SourceDataError(
            "One or more required fields is invalid/missing. "
            f"Required fields are {list(required)}; missing application data {missing}"
        )
    data_source = {key: extra[key] for key in required}
    data_source.update({key: extra[key] for key in ptype.optional_billing_keys if key in extra})
    return data_source


def settings_complete(record_type: str, credentials: dict[str, Any], data_source: dict[str, Any]) -> bool:
    """Koku's per-type "settings ready" screen (without the common conditions)."""
    if record_type not in REGISTRY:
        return False
    return provider_type(record_type).settings_complete(credentials, data_source)
