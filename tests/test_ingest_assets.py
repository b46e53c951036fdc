"""Ingestion through real Dagster runs: Kafka event -> provider -> manifest ... summary Parquet."""

from __future__ import annotations

import csv
import gzip
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from koku_dagster.assets.ingest import INGEST_ASSETS, ManifestConfig
from koku_dagster.resources import ApplicationDatabase
from koku_devtools.nise_reports import generate
from tests.conftest import Harness
from tests.resources import cloud_apis_resource, ingestion_resource, object_store_resource

MONTH = date(2026, 10, 1)


@pytest.fixture(scope="session")
def nise_aws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nise")
    return generate(root, date(2026, 10, 1), date(2026, 10, 3), kinds=("aws",))["aws"]


def _raw_cost(bucket: Path) -> tuple[Decimal, int]:
    """Independent total: unblended cost summed exactly over the raw CSV rows of the month."""
    total, rows = Decimal(0), 0
    for path in bucket.rglob("*.csv.gz"):
        with gzip.open(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("lineItem/UsageStartDate", "").startswith("2026-10"):
                    total += Decimal(row["lineItem/UnblendedCost"] or 0)
                    rows += 1
    return total, rows


def _passed_check(harness: Harness) -> None:
    """Record every provider as reachable, as a passed reachability check does (test_reachability.py)."""
    with harness.engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_provider SET reachable = :yes"), {"yes": True})


def _setup(harness: Harness, bucket_src: Path, name: str = "aws") -> tuple[str, Path]:
    bucket = harness.buckets / name
    shutil.copytree(bucket_src, bucket)
    created = harness.admin.create_cost_source("aws-local", f"AWS {name}", bucket=str(bucket))
    harness.settle()
    _passed_check(harness)
    uuid = harness.table("api_sources", "source_id")[-1]["koku_uuid"]
    assert uuid and created
    return uuid, bucket


def _materialize(
    harness: Harness, instance: dg.DagsterInstance, uuid: str, *, force: bool = False, endpoint_url: str | None = None
) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions("providers", [uuid])
    resources = {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "object_store": object_store_resource(
            url=harness.store.url, local_bucket_roots=str(harness.buckets), endpoint_url=endpoint_url
        ),
        "ingestion": ingestion_resource(str(harness.store.local_root)),
        "cloud_apis": cloud_apis_resource(),
    }
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()}),
        resources=resources,
        instance=instance,
        run_config=dg.RunConfig(ops={"report_manifest": ManifestConfig(force=force)}),
        raise_on_error=False,
    )


def _query(sql: str) -> tuple:
    with duckdb.connect() as con:
        return con.execute(sql).fetchone()


def _summary_files(harness: Harness, uuid: str) -> list[Path]:
    root = harness.store.local_root / "data/summary/reporting_awscostentrylineitem_daily_summary"
    return sorted((root / f"source={uuid}" / "year=2026" / "month=10").glob("*.parquet"))


def test_event_to_summary_totals_match_raw_csv_and_rerun_is_idempotent(harness: Harness, nise_aws: Path) -> None:
    uuid, bucket = _setup(harness, nise_aws)
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid)
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {
            "summary_totals_match_raw": True,
            "no_rows_outside_month": True,
            "row_counts_consistent": True,
            "focus_billed_totals": True,
            "focus_mandatory_columns": True,
            "focus_allowed_values": True,
        }
        files = _summary_files(harness, uuid)
        assert files
        total, rows = _raw_cost(bucket)
        got = _query(
            f"SELECT sum(CAST(unblended_cost AS DECIMAL(38, 10))) FROM read_parquet({[str(f) for f in files]})"
        )[0]
        assert abs(Decimal(got) - total) < Decimal("0.01")
        line_meta = result.asset_materializations_for_node("line_items")[0].metadata
        assert line_meta["dagster/row_count"].value == rows
        manifest = harness.table("reporting_common_costusagereportmanifest", "id")
        assert len(manifest) == 1 and manifest[0]["completed_datetime"] is not None
        assert set(manifest[0]["state"]) == {"download", "processing", "summary"}
        statuses = harness.table("reporting_common_costusagereportstatus", "id")
        assert statuses and all(s["status"] == 1 and s["completed_datetime"] for s in statuses)
        provider = harness.table("api_provider", "uuid")[0]
        assert provider["setup_complete"] and provider["data_updated_timestamp"]
        before = {p: p.read_bytes() for p in files}

        again = _materialize(harness, instance, uuid)  # same assembly, all done: nothing runs
        assert again.success and not again.asset_materializations_for_node("line_items")
        forced = _materialize(harness, instance, uuid, force=True)
        assert forced.success
        after = _summary_files(harness, uuid)
        assert [p.name for p in after] == [p.name for p in before]
        got_again = _query(
            "SELECT sum(CAST(unblended_cost AS DECIMAL(38, 10))), count(*) "
            f"FROM read_parquet({[str(f) for f in after]})"
        )
        assert abs(Decimal(got_again[0]) - total) < Decimal("0.01")
        view = duckdb.connect(str(harness.store.local_root / "warehouse.duckdb"), read_only=True)
        assert (
            view.execute("SELECT count(*) FROM reporting_awscostentrylineitem_daily_summary").fetchone()[0]
            == got_again[1]
        )
        focus_total = view.execute(
            "SELECT sum(BilledCost), any_value(x_KokuProviderType) FROM focus_costs WHERE x_SourceUuid = ?", [uuid]
        ).fetchone()
        view.close()
        assert abs(Decimal(str(focus_total[0])) - total) < Decimal("0.01") and focus_total[1] == "AWS-local"


def test_truncated_gzip_fails_its_partition_only(harness: Harness, nise_aws: Path) -> None:
    uuid, bucket = _setup(harness, nise_aws, "broken")
    good_uuid, _ = _setup(harness, nise_aws, "good")
    report = next(bucket.rglob("*.csv.gz"))
    data = report.read_bytes()
    report.write_bytes(data[: len(data) // 2])
    for manifest in bucket.rglob("cur-Manifest.json"):
        manifest.touch()
    with dg.instance_for_test() as instance:
        failed = _materialize(harness, instance, uuid)
        assert not failed.success
        rows = [m for m in harness.table("reporting_common_costusagereportmanifest", "id") if m["provider_id"] == uuid]
        assert "failed" in rows[0]["state"]["processing"]
        assert all(
            s["status"] == 2
            for s in harness.table("reporting_common_costusagereportstatus", "id")
            if s["manifest_id"] == rows[0]["id"]
        )
        assert _summary_files(harness, uuid) == []
        assert _materialize(harness, instance, good_uuid).success


def test_bucket_outside_roots_fails_and_reports_unavailable(harness: Harness, nise_aws: Path, tmp_path: Path) -> None:
    uuid, bucket = _setup(harness, nise_aws)
    moved = tmp_path / "moved"
    shutil.move(str(bucket), moved)
    bucket.symlink_to(moved)  # the directory now resolves outside the allowed roots
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid)
        assert not result.success
    row = harness.table("api_sources", "source_id")[0]
    assert row["status"]["availability_status"] == "unavailable" and row["status_push_pending"]
    harness.settle()
    assert any(body["availability_status"] == "unavailable" for _, body in harness.standin.status_patches(True))


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    from koku_devtools.services import MotoServer

    with MotoServer(workdir=tmp_path_factory.mktemp("moto")) as server:
        yield server


def test_s3_bucket_through_assumed_role(
    harness: Harness, nise_aws: Path, moto_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in moto_server.aws_env().items():
        monkeypatch.setenv(key, value)
    s3 = moto_server.client("s3")
    bucket = f"cur-{harness.topic.lower()}"[:60].replace("_", "-")
    s3.create_bucket(Bucket=bucket)
    for path in nise_aws.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, str(path.relative_to(nise_aws)))
    harness.admin.create_cost_source(
        "aws", "Real AWS", bucket=bucket, role_arn="arn:aws:iam::123456789012:role/CostManagement", external_id="ext"
    )
    harness.settle()
    _passed_check(harness)
    uuid = harness.table("api_sources", "source_id")[0]["koku_uuid"]
    assert uuid
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid, endpoint_url=moto_server.endpoint_url)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
        total, _ = _raw_cost(nise_aws)
        got = _query(
            "SELECT sum(CAST(unblended_cost AS DECIMAL(38, 10))) "
            f"FROM read_parquet({[str(f) for f in _summary_files(harness, uuid)]})"
        )[0]
        assert abs(Decimal(got) - total) < Decimal("0.01")

        s3.delete_object(
            Bucket=bucket,
            Key=next(k["Key"] for k in s3.list_objects_v2(Bucket=bucket)["Contents"] if k["Key"].endswith(".csv.gz")),
        )
        missing = _materialize(harness, instance, uuid, force=True, endpoint_url=moto_server.endpoint_url)
        assert not missing.success
        failure = [e for e in missing.all_events if e.event_type_value == "STEP_FAILURE"][0]
        assert "missing" in str(failure.event_specific_data.error.message)

        for path in nise_aws.rglob("*"):  # the report files are back, but not their manifests
            key = str(path.relative_to(nise_aws))
            if path.is_file():
                if key.endswith("-Manifest.json"):
                    s3.delete_object(Bucket=bucket, Key=key)
                else:
                    s3.upload_file(str(path), bucket, key)
        orphaned = _materialize(harness, instance, uuid, force=True, endpoint_url=moto_server.endpoint_url)
        assert not orphaned.success
        failure = [e for e in orphaned.all_events if e.event_type_value == "STEP_FAILURE"][0]
        assert "holds report files but no manifest" in str(failure.event_specific_data.error.message)


def test_missing_s3_bucket_fails_and_reports_unavailable(
    harness: Harness, moto_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in moto_server.aws_env().items():
        monkeypatch.setenv(key, value)
    harness.admin.create_cost_source("aws", "No bucket", bucket="no-such-bucket-here")
    harness.settle()
    _passed_check(harness)  # the bucket went away after the check
    uuid = harness.table("api_sources", "source_id")[0]["koku_uuid"]
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid, endpoint_url=moto_server.endpoint_url)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "NoSuchBucket" in failure.event_specific_data.error.message
    assert harness.table("api_sources", "source_id")[0]["status"]["availability_status"] == "unavailable"


def test_s3_object_store_publishes_and_fetches_partitions(
    harness: Harness, nise_aws: Path, moto_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from koku_dagster.assets.ingest import daily_line_items, daily_summary, line_items

    for key, value in moto_server.aws_env().items():
        monkeypatch.setenv(key, value)
    s3 = moto_server.client("s3")
    store_bucket = f"store-{tmp_path.name}".lower().replace("_", "-")[:60]
    s3.create_bucket(Bucket=store_bucket)
    uuid, _ = _setup(harness, nise_aws)
    cache = tmp_path / "cache"
    resources = {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "object_store": object_store_resource(
            url=f"s3://{store_bucket}/koku",
            endpoint_url=moto_server.endpoint_url,
            local_bucket_roots=str(harness.buckets),
            cache_dir=str(cache),
        ),
        "ingestion": ingestion_resource(str(tmp_path / "home")),
        "cloud_apis": cloud_apis_resource(),
    }
    key = dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()})

    def keys() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=store_bucket, Prefix="koku/data/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        assert dg.materialize(INGEST_ASSETS, partition_key=key, resources=resources, instance=instance).success
        stored = keys()
        for part in (
            "koku/data/csv/org1234567/AWS/",
            "koku/data/parquet/org1234567/AWS/",
            "koku/data/parquet/daily/org1234567/AWS/raw/",
            "koku/data/summary/reporting_awscostentrylineitem_daily_summary/",
        ):
            assert any(k.startswith(part) and f"source={uuid}/year=2026/month=10/" in k for k in stored), part
        shutil.rmtree(cache)  # another machine: nothing local, everything comes from the bucket
        rerun = dg.materialize(
            INGEST_ASSETS,
            selection=[line_items, daily_line_items, daily_summary],
            partition_key=key,
            resources=resources,
            instance=instance,
        )
        assert rerun.success and all(c.passed for c in rerun.get_asset_check_evaluations())
        assert sorted(keys()) == sorted(stored)  # replaced, not duplicated
        from koku_dagster.infra.object_store import ObjectStore

        ObjectStore(f"s3://{store_bucket}/koku", moto_server.endpoint_url, cache).delete_provider_data(uuid)
        assert keys() == [] and not list(cache.rglob(f"source={uuid}"))


def test_missing_manifest_fails_its_partition_but_a_month_without_reports_does_not(
    harness: Harness, nise_aws: Path
) -> None:
    uuid, bucket = _setup(harness, nise_aws, "no-manifest")
    for manifest in bucket.rglob("cur-Manifest.json"):
        manifest.unlink()  # report files without their manifest
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "holds report files but no manifest" in failure.event_specific_data.error.message
        assert harness.table("reporting_common_costusagereportmanifest", "id") == []
        instance.add_dynamic_partitions("providers", [uuid])
        september = dg.materialize(  # no folder at all for the month: no report yet, nothing to do
            INGEST_ASSETS,
            partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": "2026-09-01"}),
            resources={
                "app_db": ApplicationDatabase(database_url=harness.url),
                "object_store": object_store_resource(url=harness.store.url, local_bucket_roots=str(harness.buckets)),
                "ingestion": ingestion_resource(str(harness.store.local_root)),
                "cloud_apis": cloud_apis_resource(),
            },
            instance=instance,
        )
        assert september.success and not september.get_asset_materialization_events()
    status = harness.table("api_sources", "source_id")[0]["status"]
    assert status is None or status.get("availability_status") != "unavailable"  # the report is wrong, not the source


def test_a_summary_purges_the_provider_months_beyond_retention(harness: Harness, nise_aws: Path) -> None:
    from koku_dagster.ingest import manifests

    uuid, _ = _setup(harness, nise_aws, "retained")
    old = date(2020, 1, 1)
    stale = harness.store.local_root / "data/parquet/org1234567/AWS" / f"source={uuid}" / "year=2020" / "month=01"
    stale.mkdir(parents=True)
    (stale / "old.parquet").write_bytes(b"old")
    manifests.record_manifest(harness.engine, uuid, "old-assembly", old, ["old.csv.gz"], None)
    with dg.instance_for_test() as instance:
        assert _materialize(harness, instance, uuid).success
    assert not stale.exists()
    assert all(
        m["billing_period_start_datetime"].year == 2026
        for m in harness.table("reporting_common_costusagereportmanifest", "id")
    )
    assert (
        harness.store.local_root / "data/parquet/org1234567/AWS" / f"source={uuid}" / "year=2026" / "month=10"
    ).is_dir()


def _resources(harness: Harness) -> dict[str, object]:
    return {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "object_store": object_store_resource(url=harness.store.url, local_bucket_roots=str(harness.buckets)),
        "ingestion": ingestion_resource(str(harness.store.local_root)),
        "cloud_apis": cloud_apis_resource(),
    }


def test_any_step_error_is_recorded_in_the_manifest_state(harness: Harness, nise_aws: Path) -> None:
    from koku_dagster.assets.ingest import daily_summary

    uuid, _ = _setup(harness, nise_aws, "corrupt-daily")
    with dg.instance_for_test() as instance:
        assert _materialize(harness, instance, uuid).success
        daily = (
            harness.store.local_root
            / "data/parquet/daily/org1234567/AWS/raw"
            / f"source={uuid}"
            / "year=2026"
            / "month=10"
        )
        for part in daily.glob("*.parquet"):
            part.write_bytes(b"not parquet")  # not an IngestError: DuckDB's own
        key = dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()})
        again = dg.materialize(
            INGEST_ASSETS,
            selection=[daily_summary],
            partition_key=key,
            resources=_resources(harness),
            instance=instance,
            raise_on_error=False,
        )
        assert not again.success
        failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
        assert "parquet" in failure.event_specific_data.error.message.lower()
    (manifest,) = harness.table("reporting_common_costusagereportmanifest", "id")
    summary_state = manifest["state"]["summary"]
    assert "failed" in summary_state and "parquet magic bytes" in str(summary_state).lower()


def test_a_provider_deleted_during_a_run_keeps_nothing(harness: Harness, nise_aws: Path) -> None:
    from koku_dagster.assets.ingest import line_items, report_files, report_manifest

    uuid, _ = _setup(harness, nise_aws, "going")
    key = dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        assert dg.materialize(
            INGEST_ASSETS,
            selection=[report_manifest, report_files],
            partition_key=key,
            resources=_resources(harness),
            instance=instance,
        ).success
        with harness.engine.begin() as conn:  # the sources sensor starts deleting it (its files next, then rows)
            conn.execute(sa.text("UPDATE api_provider SET active = false WHERE uuid = :u"), {"u": uuid})
        result = dg.materialize(
            INGEST_ASSETS,
            selection=[line_items],
            partition_key=key,
            resources=_resources(harness),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "was deleted during the run" in failure.event_specific_data.error.message
    assert not [p for p in (harness.store.local_root / "data").rglob("*") if f"source={uuid}" in str(p)]
    assert harness.table("reporting_common_costusagereportmanifest", "id") == []


def test_months_beyond_retention_are_not_ingested(harness: Harness, nise_aws: Path) -> None:
    uuid, _ = _setup(harness, nise_aws, "too-old")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        old = dg.materialize(
            INGEST_ASSETS,
            partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": "2026-10-01"}),
            resources=_resources(harness)
            | {"ingestion": ingestion_resource(str(harness.store.local_root), retain_num_months=1)},
            instance=instance,
        )
    assert old.success and not old.get_asset_materialization_events()  # October is gone by November's rule
    assert harness.table("reporting_common_costusagereportmanifest", "id") == []
