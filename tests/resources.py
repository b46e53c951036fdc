"""Dagster resources for tests: the given values, the rest from the settings defaults (one place for them)."""

from __future__ import annotations

from typing import Any

from koku_dagster.infra.settings import settings_from_env
from koku_dagster.resources import CloudApisResource, KafkaResource, ObjectStoreResource, PlatformSourcesResource
from koku_dagster.resources.ingestion import IngestionResource

_DEFAULTS = settings_from_env({})


def ingestion_resource(home: str, **values: Any) -> IngestionResource:
    defaults = {
        "initial_ingest_num_months": _DEFAULTS.initial_ingest_num_months,
        "polling_interval_seconds": _DEFAULTS.polling_interval_seconds,
        "retain_num_months": _DEFAULTS.retain_num_months,
    }
    return IngestionResource(home=home, **(defaults | values))


def object_store_resource(url: str, local_bucket_roots: str, **values: Any) -> ObjectStoreResource:
    defaults = {"endpoint_url": None, "cache_dir": ""}
    return ObjectStoreResource(url=url, local_bucket_roots=local_bucket_roots, **(defaults | values))


def kafka_resource(bootstrap_servers: str, **values: Any) -> KafkaResource:
    defaults = {
        "sources_topic": _DEFAULTS.sources_topic,
        "upload_topic": _DEFAULTS.upload_topic,
        "validation_topic": _DEFAULTS.validation_topic,
    }
    return KafkaResource(bootstrap_servers=bootstrap_servers, **(defaults | values))


def platform_sources_resource(api_url: str, psk: str) -> PlatformSourcesResource:
    return PlatformSourcesResource(
        api_url=api_url,
        api_prefix=_DEFAULTS.sources_api_prefix,
        internal_api_prefix=_DEFAULTS.sources_internal_api_prefix,
        psk=psk,
    )


def cloud_apis_resource(**values: Any) -> CloudApisResource:
    defaults = {
        "azure_authority_host": _DEFAULTS.azure_authority_host,
        "azure_management_url": _DEFAULTS.azure_management_url,
        "azure_blob_url": _DEFAULTS.azure_blob_url,
        "gcp_bigquery_url": _DEFAULTS.gcp_bigquery_url,
    }
    return CloudApisResource(**(defaults | values))
