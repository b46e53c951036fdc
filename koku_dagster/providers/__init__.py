"""The provider types, one module each, and the registry mapping every type name to its type.

Adding a provider type: one module (with its ``TYPES``), its SQL files in ``sql/``, one line below.
"""

from __future__ import annotations

from koku_dagster.providers import aws, azure, gcp, ocp
from koku_dagster.providers.base import ProviderType

REGISTRY: dict[str, ProviderType] = {t.name: t for t in (*aws.TYPES, *azure.TYPES, *gcp.TYPES, *ocp.TYPES)}

#: Platform Sources source type name -> provider type name (Koku's map).
SOURCE_TYPE_MAP: dict[str, str] = {t.source_type_name: t.name for t in REGISTRY.values()}
#: Authentication types that concern cost management, by provider family.
COST_AUTHTYPES: dict[str, str] = {t.family: t.cost_authtype for t in REGISTRY.values()}
#: Provider types whose reports are polled and ingested (OpenShift pushes its data instead).
POLLED_TYPES: frozenset[str] = frozenset(t.name for t in REGISTRY.values() if t.polled)


def provider_type(name: str) -> ProviderType:
    """The type of a provider type name (``AWS``, ``AWS-local``, ..., ``OCP``); KeyError when unknown."""
    return REGISTRY[name]


__all__ = ["COST_AUTHTYPES", "POLLED_TYPES", "REGISTRY", "SOURCE_TYPE_MAP", "ProviderType", "provider_type"]
