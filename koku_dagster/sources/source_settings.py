"""Credentials and billing source of a source, per provider type (CONTRACT section 3 table)."""

from __future__ import annotations

from typing import Any

from koku_dagster.sources.errors import SourceDataError
from koku_dagster.sources.model import COST_AUTHTYPES, SourceDetails, Tenant, base_type
from koku_dagster.sources.platform import PlatformView

#: Required and optional keys of ``data_source``, copied from the application's ``extra``.
REQUIRED_BILLING_KEYS: dict[str, tuple[str, ...]] = {
    "AWS": ("bucket",),
    "AWS-local": ("bucket",),
    "Azure": ("resource_group", "storage_account"),
    "Azure-local": ("resource_group", "storage_account"),
    "GCP": ("dataset",),
    "GCP-local": ("bucket",),
    "OCP": (),
}
OPTIONAL_BILLING_KEYS: dict[str, tuple[str, ...]] = {
    "AWS": ("bucket_region", "storage_only", "metered"),
    "Azure": ("scope", "export_name", "storage_only", "metered"),
    "GCP": ("dataset", "bucket", "storage_only"),
    "OCP": (),
}

AZURE_CREDENTIAL_KEYS = frozenset({"client_id", "client_secret", "subscription_id", "tenant_id"})


def build_credentials(
    provider_type: str, source_id: int, tenant: Tenant, platform: PlatformView, details: SourceDetails | None
) -> dict[str, Any]:
    """``authentication.credentials`` for a source; :class:`SourceDataError` when incomplete."""
    family = base_type(provider_type)
    if family == "OCP":
        details = details or platform.source_details(source_id, tenant)
        if not details.source_ref:
            raise SourceDataError("Unable to find Cluster ID")
        return {"cluster_id": details.source_ref}
    auth = platform.authentication(source_id, COST_AUTHTYPES[family], tenant)
    if auth is None:
        raise SourceDataError(f"No {COST_AUTHTYPES[family]} authentication for source")
    if family == "AWS":
        role_arn = auth.username or platform.authentication_password(source_id, auth.id, tenant)
        if not role_arn:
            raise SourceDataError("Unable to find the role ARN of the source")
        return {"role_arn": role_arn, "external_id": auth.extra.get("external_id")}
    if family == "GCP":
        if not auth.username:
            raise SourceDataError("Unable to find the GCP project id of the source")
        return {"project_id": auth.username}
    # Azure: three calls.
    application = platform.application(source_id, tenant)
    subscription_id = (application.extra if application else {}).get("subscription_id")
    tenant_id = (auth.extra.get("azure") or {}).get("tenant_id") if isinstance(auth.extra.get("azure"), dict) else None
    client_secret = platform.authentication_password(source_id, auth.id, tenant)
    credentials = {
        "client_id": auth.username or None,
        "client_secret": client_secret,
        "subscription_id": subscription_id,
        "tenant_id": tenant_id,
    }
    missing = sorted(key for key, value in credentials.items() if not value)
    if missing:
        raise SourceDataError(f"Azure credentials are missing {', '.join(missing)}")
    return credentials


def build_data_source(provider_type: str, source_id: int, tenant: Tenant, platform: PlatformView) -> dict[str, Any]:
    """``billing_source.data_source`` from the cost-management application's ``extra``."""
    application = platform.application(source_id, tenant)
    if application is None:
        raise SourceDataError("No application data for source")
    extra = application.extra
    required = REQUIRED_BILLING_KEYS[provider_type]
    missing = [key for key in required if not extra.get(key)]
    if missing:
        raise SourceDataError(
            "One or more required fields is invalid/missing. "
            f"Required fields are {list(required)}; missing application data {missing}"
        )
    optional = OPTIONAL_BILLING_KEYS[base_type(provider_type)]
    data_source = {key: extra[key] for key in required}
    data_source.update({key: extra[key] for key in optional if key in extra})
    return data_source


def settings_complete(record_type: str, credentials: dict[str, Any], data_source: dict[str, Any]) -> bool:
    """Koku's per-type "settings ready" screen (without the common conditions)."""
    family = base_type(record_type)
    if family == "OCP":
        return bool(credentials)
    if family == "AWS":
        return bool(credentials) and bool(data_source)
    if family == "Azure":
        return (
            bool(data_source)
            and set(credentials) == AZURE_CREDENTIAL_KEYS
            and {"resource_group", "storage_account"} <= set(data_source)
        )
    if family == "GCP":
        return bool(credentials) and bool(data_source)
    return False
