"""The seeded source types and application types, and their REST forms (the same for every tenant)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from koku_devtools.platform_sources.fields import rest_time

COST_MANAGEMENT = "/insights/platform/cost-management"


@dataclass
class SourceType:
    """A seeded source type."""

    id: int
    name: str
    category: str
    product_name: str
    vendor: str
    icon_url: str
    schema: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class ApplicationType:
    """A seeded application type."""

    id: int
    name: str
    display_name: str
    supported_source_types: list[str]
    supported_authentication_types: dict[str, list[str]]
    created_at: datetime
    updated_at: datetime
    dependent_applications: list[str] = field(default_factory=list)
    resource_ownership: str | None = None


_AMAZON_ICON = "/apps/frontend-assets/partners-icons/aws-long.svg"
_AZURE_ICON = "/apps/frontend-assets/partners-icons/microsoft-azure-short.svg"
_GOOGLE_ICON = "/apps/frontend-assets/partners-icons/google-cloud-short.svg"
_REDHAT_ICON = "/apps/frontend-assets/red-hat-logos/stacked.svg"
# (id, name, category, product_name, vendor, icon_url, authentication types)
SOURCE_TYPE_SEEDS: tuple[tuple[int, str, str, str, str, str, tuple[str, ...]], ...] = (
    (1, "openshift", "Red Hat", "Red Hat OpenShift Container Platform", "Red Hat", _REDHAT_ICON, ("token",)),
    (
        2,
        "amazon",
        "Cloud",
        "Amazon Web Services",
        "Amazon",
        _AMAZON_ICON,
        ("arn", "cloud-meter-arn", "access_key_secret_key"),
    ),
    (
        3,
        "azure",
        "Cloud",
        "Microsoft Azure",
        "Azure",
        _AZURE_ICON,
        ("tenant_id_client_id_client_secret", "lighthouse_subscription_id"),
    ),
    (4, "google", "Cloud", "Google Cloud", "Google", _GOOGLE_ICON, ("project_id_service_account_json",)),
    (
        5,
        "ibm",
        "Cloud",
        "IBM Cloud",
        "IBM",
        "/apps/frontend-assets/partners-icons/ibm-cloud.svg",
        ("api_token_account_id",),
    ),
    (6, "satellite", "Red Hat", "Red Hat Satellite", "Red Hat", _REDHAT_ICON, ("receptor_node",)),
    (7, "amazon-local", "Cloud", "Amazon Web Services (local files)", "Amazon", _AMAZON_ICON, ("arn",)),
    (
        8,
        "azure-local",
        "Cloud",
        "Microsoft Azure (local files)",
        "Azure",
        _AZURE_ICON,
        ("tenant_id_client_id_client_secret",),
    ),
    (
        9,
        "google-local",
        "Cloud",
        "Google Cloud (local files)",
        "Google",
        _GOOGLE_ICON,
        ("project_id_service_account_json",),
    ),
    (10, "bitbucket", "Developer sources", "Bitbucket", "Atlassian", "", ("username_password",)),
    (11, "dockerhub", "Developer sources", "Docker Hub", "Docker", "", ("username_password",)),
    (12, "github", "Developer sources", "GitHub", "GitHub", "", ("username_password",)),
    (13, "gitlab", "Developer sources", "GitLab", "GitLab", "", ("username_password",)),
    (14, "quay", "Developer sources", "Quay", "Red Hat", "", ("username_password",)),
)
_COST_SOURCE_TYPES = (
    "amazon",
    "azure",
    "google",
    "openshift",
    "ibm",
    "amazon-local",
    "azure-local",
    "google-local",
)
_COST_AUTH_TYPES = {
    "amazon": ["arn"],
    "azure": ["tenant_id_client_id_client_secret"],
    "google": ["project_id_service_account_json"],
    "openshift": ["token"],
    "ibm": ["api_token_account_id"],
    "amazon-local": ["arn"],
    "azure-local": ["tenant_id_client_id_client_secret"],
    "google-local": ["project_id_service_account_json"],
}
_DEVELOPER_SOURCE_TYPES = ("bitbucket", "dockerhub", "github", "gitlab", "quay")
# (id, name, display_name, supported source types, supported authentication types, ownership)
APPLICATION_TYPE_SEEDS: tuple[tuple[int, str, str, tuple[str, ...], dict[str, list[str]], str | None], ...] = (
    (
        1,
        "/insights/platform/cloud-meter",
        "RHEL management",
        ("amazon", "azure", "google"),
        {
            "amazon": ["cloud-meter-arn"],
            "azure": ["lighthouse_subscription_id"],
            "google": ["project_id_service_account_json"],
        },
        None,
    ),
    (2, COST_MANAGEMENT, "Cost Management", _COST_SOURCE_TYPES, _COST_AUTH_TYPES, None),
    (3, "/insights/platform/fifi", "Remediations", ("satellite",), {"satellite": ["receptor_node"]}, None),
    (
        4,
        "/insights/platform/image-builder",
        "Launch images",
        ("amazon", "azure", "google"),
        {
            "amazon": ["provisioning-arn"],
            "azure": ["provisioning_lighthouse_subscription_id"],
            "google": ["provisioning_project_id"],
        },
        None,
    ),
    (
        5,
        "/insights/platform/app-studio",
        "App Studio",
        _DEVELOPER_SOURCE_TYPES,
        {name: ["username_password"] for name in _DEVELOPER_SOURCE_TYPES},
        "user",
    ),
)


def seeded_source_types(now: datetime) -> dict[int, SourceType]:
    """The seeded source types by id, created at ``now``."""
    return {
        sid: SourceType(
            sid,
            name,
            category,
            product,
            vendor,
            icon,
            {"authentication": [{"type": t, "name": t} for t in auths], "endpoint": {"hidden": True, "fields": []}},
            now,
            now,
        )
        for sid, name, category, product, vendor, icon, auths in SOURCE_TYPE_SEEDS
    }


def seeded_application_types(now: datetime) -> dict[int, ApplicationType]:
    """The seeded application types by id, created at ``now``."""
    return {
        aid: ApplicationType(
            aid, name, display, list(source_types), copy.deepcopy(auths), now, now, resource_ownership=owner
        )
        for aid, name, display, source_types, auths, owner in APPLICATION_TYPE_SEEDS
    }


def render_source_type(t: SourceType) -> dict[str, Any]:
    """REST form of a source type."""
    return {
        "id": str(t.id),
        "created_at": rest_time(t.created_at),
        "updated_at": rest_time(t.updated_at),
        "category": t.category,
        "name": t.name,
        "product_name": t.product_name,
        "vendor": t.vendor,
        "schema": copy.deepcopy(t.schema),
        "icon_url": t.icon_url,
    }


def render_application_type(t: ApplicationType) -> dict[str, Any]:
    """REST form of an application type."""
    data: dict[str, Any] = {
        "id": str(t.id),
        "created_at": rest_time(t.created_at),
        "updated_at": rest_time(t.updated_at),
        "name": t.name,
        "display_name": t.display_name,
        "dependent_applications": list(t.dependent_applications),
        "supported_source_types": list(t.supported_source_types),
        "supported_authentication_types": copy.deepcopy(t.supported_authentication_types),
    }
    if t.resource_ownership:
        data["resource_ownership"] = t.resource_ownership
    return data
