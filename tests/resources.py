"""Dagster resources for tests: the given values, the rest from the settings defaults (one place for them)."""

from __future__ import annotations

from typing import Any

from koku_dagster.infra.settings import settings_from_env
from koku_dagster.resources import (
    ApplicationDatabase,
    CloudApisResource,
    KafkaResource,
    ObjectStoreResource,
    PlatformSourcesResource,
)
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
        "security_protocol": _DEFAULTS.kafka_security.protocol,
        "sasl_mechanism": _DEFAULTS.kafka_security.sasl_mechanism,
        "sasl_username": _DEFAULTS.kafka_security.sasl_username,
        "sasl_password": _DEFAULTS.kafka_security.sasl_password,
        "ssl_ca_location": _DEFAULTS.kafka_security.ssl_ca_location,
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


def ingest_resources(harness: Any, **cloud_apis: Any) -> dict[str, Any]:
    """The resources of the ingest assets over a test harness (its database, object store and buckets)."""
    return {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "object_store": object_store_resource(url=harness.store.url, local_bucket_roots=str(harness.buckets)),
        "ingestion": ingestion_resource(str(harness.store.local_root)),
        "cloud_apis": cloud_apis_resource(**cloud_apis),
    }
