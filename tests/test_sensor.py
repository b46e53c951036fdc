"""``platform_sources_sensor`` through Dagster: partitions follow providers, records are materialized."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from koku_dagster.assets.partitions import providers_partitions
from koku_dagster.definitions import defs
from koku_dagster.infra.db.schema import provider
from koku_dagster.ingest.reachability import check_providers
from koku_dagster.providers.base import ReportAccess
from koku_dagster.resources import ApplicationDatabase
from koku_dagster.sensors.platform_sources import platform_sources_sensor
from tests.conftest import Harness
from tests.resources import (
    cloud_apis_resource,
    ingestion_resource,
    kafka_resource,
    object_store_resource,
    platform_sources_resource,
)

SECRET = "sensor-test-client-secret"


def _resources(h: Harness) -> dict[str, object]:
    return {
        "app_db": ApplicationDatabase(database_url=h.url),
        "platform_sources": platform_sources_resource(api_url=h.standin.url, psk="sources-psk"),
        "kafka": kafka_resource(bootstrap_servers=h.broker.bootstrap, sources_topic=h.topic),
        "object_store": object_store_resource(url=h.store.url, local_bucket_roots=str(h.buckets)),
        "ingestion": ingestion_resource(str(h.store.local_root), initial_ingest_num_months=3),
        "cloud_apis": cloud_apis_resource(),
    }


def _tick(h: Harness, instance: dg.DagsterInstance) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources=_resources(h))
    result = platform_sources_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:  # what the daemon does with them
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def _checked_tick(h: Harness, instance: dg.DagsterInstance) -> dg.SensorResult:
    """A tick after the reachability checks of every provider (what ``source_reachability_sensor``'s runs do)."""
    with h.engine.connect() as conn:
        uuids = list(conn.execute(sa.select(provider.c.uuid)).scalars())
    check_providers(h.engine, ReportAccess((h.buckets,), lambda *_: None), uuids)
    return _tick(h, instance)


def test_definitions_load_with_contract_names(tmp_path, monkeypatch) -> None:
    from koku_dagster.infra import settings

    monkeypatch.setenv("KOKU_HOME", str(tmp_path))
    settings.get_settings.cache_clear()
    try:
        with dg.instance_for_test():  # loading needs a live instance (earlier tests' instances are gone)
            loaded = defs()
            dg.Definitions.validate_loadable(loaded)
    finally:
        settings.get_settings.cache_clear()
    assert not (tmp_path / "koku.db").exists()  # loading touches no database: migrated on first use
    assert {a.key.to_user_string() for a in loaded.assets} >= {"source_records", "provider_records", "daily_summary"}
    assert loaded.get_schedule_def("report_polling_schedule").default_status == dg.DefaultScheduleStatus.RUNNING
    sensor = loaded.get_sensor_def("platform_sources_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert providers_partitions.name == "providers"


def test_sensor_adds_and_deletes_provider_partitions_and_reports_records(harness: Harness) -> None:
    storage = harness.buckets / "az"
    storage.mkdir()
    aws_dir = harness.buckets / "aws"
    aws_dir.mkdir()
    aws = harness.admin.create_cost_source(
        "aws-local", "AWS", bucket=str(aws_dir), uid="0b6c0f8e-1111-4e5e-9d9e-000000000001"
    )
    harness.admin.create_cost_source(
        "azure-local",
        "Azure",
        storage_account=str(storage),
        resource_group="rg",
        client_secret=SECRET,
        uid="0b6c0f8e-1111-4e5e-9d9e-000000000002",
    )
    with dg.instance_for_test() as instance:
        result = _tick(harness, instance)
        assert set(instance.get_dynamic_partitions("providers")) == {
            "0b6c0f8e-1111-4e5e-9d9e-000000000001",
            "0b6c0f8e-1111-4e5e-9d9e-000000000002",
        }
        events = {e.asset_key.to_user_string(): e for e in result.asset_events}
        assert set(events) == {"source_records", "provider_records"}
        src_meta = events["source_records"].metadata
        assert src_meta["events_read"].value == 8
        assert src_meta["sources_by_type"].value == {"AWS-local": 1, "Azure-local": 1}
        assert events["provider_records"].metadata["providers_created"].value == 2
        # New providers are ingested once their reachability check passed: their initial months, 3 each.
        assert not result.run_requests
        result = _checked_tick(harness, instance)
        keys = sorted(str(r.partition_key) for r in result.run_requests)
        for uid in ("0b6c0f8e-1111-4e5e-9d9e-000000000001", "0b6c0f8e-1111-4e5e-9d9e-000000000002"):
            assert len([k for k in keys if k.endswith(f"|{uid}")]) == 3
        assert len(keys) == 6 and len({r.run_key for r in result.run_requests}) == 6
        assert SECRET not in repr(result)

        harness.admin.delete_source(aws["source"]["id"])
        _tick(harness, instance)
        assert instance.get_dynamic_partitions("providers") == ["0b6c0f8e-1111-4e5e-9d9e-000000000002"]

        quiet = _tick(harness, instance)
        quiet = _tick(harness, instance)
        assert quiet.skip_reason is not None and not quiet.asset_events


def test_records_check_passes_on_consistent_tables(harness: Harness) -> None:
    bucket = harness.buckets / "b"
    bucket.mkdir()
    harness.admin.create_cost_source("aws-local", "AWS", bucket=str(bucket))
    harness.settle()
    from koku_dagster.assets.source_records import providers_match_sources

    result = providers_match_sources(ApplicationDatabase(database_url=harness.url))
    assert result.passed and result.metadata["providers"].value == 1
    with harness.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE api_sources SET koku_uuid = NULL")
    result = providers_match_sources(ApplicationDatabase(database_url=harness.url))
    assert not result.passed and result.metadata["providers_without_source"].value == 1


def test_billing_change_requests_forced_reingestion(harness: Harness) -> None:
    first, second = harness.buckets / "one", harness.buckets / "two"
    first.mkdir()
    second.mkdir()
    created = harness.admin.create_cost_source("aws-local", "AWS", bucket=str(first))
    with dg.instance_for_test() as instance:
        _tick(harness, instance)
        initial = _checked_tick(harness, instance)
        assert len(initial.run_requests) == 3
        assert not any(r.run_config["ops"]["report_manifest"]["config"]["force"] for r in initial.run_requests)
        harness.admin.update_application_extra(created["application"]["id"], {"bucket": str(second)})
        assert not _tick(harness, instance).run_requests  # not before the new settings are checked
        changed = _checked_tick(harness, instance)
        assert len(changed.run_requests) == 3
        assert all(r.run_config["ops"]["report_manifest"]["config"]["force"] for r in changed.run_requests)
        assert all(r.run_key.startswith("reingest:") for r in changed.run_requests)
        harness.admin.update_source(created["source"]["id"], name="Renamed")  # not an account change
        assert not _tick(harness, instance).run_requests


def test_a_provider_recreated_under_the_same_uuid_is_ingested_again(harness: Harness) -> None:
    bucket = harness.buckets / "again"
    bucket.mkdir()
    uid = "0b6c0f8e-1111-4e5e-9d9e-0000000000aa"
    with dg.instance_for_test() as instance:
        first = harness.admin.create_cost_source("aws-local", "AWS", bucket=str(bucket), uid=uid)
        _tick(harness, instance)
        keys_before = {r.run_key for r in _checked_tick(harness, instance).run_requests}
        assert len(keys_before) == 3
        harness.admin.delete_source(first["source"]["id"])
        _tick(harness, instance)
        harness.admin.create_cost_source("aws-local", "AWS again", bucket=str(bucket), uid=uid)
        _tick(harness, instance)
        result = _checked_tick(harness, instance)
        keys_after = {r.run_key for r in result.run_requests}
        assert {str(r.partition_key).split("|")[1] for r in result.run_requests} == {uid}
        assert len(keys_after) == 3 and not keys_after & keys_before  # not swallowed as already requested
