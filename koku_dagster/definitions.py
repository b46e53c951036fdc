"""The ``koku_dagster`` code location."""

from __future__ import annotations

import os

import dagster as dg

from koku_dagster.assets.ingest import INGEST_ASSETS, provider_month_ingest
from koku_dagster.assets.ocp_uploads import ocp_payload_ingest, ocp_payload_uploads
from koku_dagster.assets.reachability import check_source_reachability
from koku_dagster.assets.source_records import provider_records, providers_match_sources, source_records
from koku_dagster.infra.settings import Settings, get_settings
from koku_dagster.resources import (
    ApplicationDatabase,
    CloudApisResource,
    KafkaResource,
    ObjectStoreResource,
    PlatformSourcesResource,
)
from koku_dagster.resources.ingestion import IngestionResource
from koku_dagster.schedules.leftovers import leftovers_sweep, leftovers_sweep_schedule
from koku_dagster.schedules.report_polling import report_polling_schedule
from koku_dagster.sensors.dead_runs import dead_run_sensor
from koku_dagster.sensors.ocp_upload import ocp_upload_sensor
from koku_dagster.sensors.platform_sources import platform_sources_sensor
from koku_dagster.sensors.reachability import source_reachability_sensor


def _secret(name: str, default: str) -> str | dg.EnvVar:
    """Secrets are wired as env vars when set, so their values never show in the UI or run config."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "app_db": ApplicationDatabase(database_url=_secret("KOKU_DATABASE_URL", settings.database_url)),
        "platform_sources": PlatformSourcesResource(
            api_url=settings.sources_api_url,
            api_prefix=settings.sources_api_prefix,
            internal_api_prefix=settings.sources_internal_api_prefix,
            psk=_secret("SOURCES_PSK", settings.sources_psk),
        ),
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            sources_topic=settings.sources_topic,
            upload_topic=settings.upload_topic,
            validation_topic=settings.validation_topic,
            security_protocol=settings.kafka_security.protocol,
            sasl_mechanism=settings.kafka_security.sasl_mechanism,
            sasl_username=settings.kafka_security.sasl_username,
            sasl_password=_secret("KOKU_KAFKA_SASL_PASSWORD", settings.kafka_security.sasl_password or ""),
            ssl_ca_location=settings.kafka_security.ssl_ca_location,
        ),
        "ingestion": IngestionResource(
            home=str(settings.home),
            # Months older than those kept are not billing_month partitions: never asked for.
            initial_ingest_num_months=min(settings.initial_ingest_num_months, settings.retain_num_months),
            polling_interval_seconds=settings.polling_interval_seconds,
            retain_num_months=settings.retain_num_months,
        ),
        "object_store": ObjectStoreResource(
            url=settings.object_store_url,
            endpoint_url=settings.aws_endpoint_url,
            local_bucket_roots=":".join(str(p) for p in settings.local_bucket_roots),
            cache_dir=str(settings.home / "object-cache"),
            upload_url_allowlist=" ".join(settings.upload_url_allowlist),
        ),
        "cloud_apis": CloudApisResource(
            azure_authority_host=settings.azure_authority_host,
            azure_management_url=settings.azure_management_url,
            azure_blob_url=settings.azure_blob_url,
            gcp_bigquery_url=settings.gcp_bigquery_url,
        ),
    }


@dg.definitions
def defs() -> dg.Definitions:
    settings = get_settings()  # the schema is migrated on the database's first use, not here
    return dg.Definitions(
        assets=[source_records, provider_records, ocp_payload_uploads, *INGEST_ASSETS],
        asset_checks=[providers_match_sources],
        jobs=[provider_month_ingest, ocp_payload_ingest, check_source_reachability, leftovers_sweep],
        sensors=[platform_sources_sensor, ocp_upload_sensor, source_reachability_sensor, dead_run_sensor],
        schedules=[report_polling_schedule, leftovers_sweep_schedule],
        resources=build_resources(settings),
    )
