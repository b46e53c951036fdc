"""Azure and GCP through the same Dagster assets: Kafka event -> provider -> manifest ... summary Parquet."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from koku_dagster.assets.ingest import INGEST_ASSETS, ManifestConfig
from koku_dagster.ingest.reachability import check_providers
from koku_dagster.providers.base import ReportAccess
from koku_devtools.nise_reports import generate
from tests.conftest import Harness
from tests.resources import ingest_resources
from tests.test_sensor import _tick

MONTH = date(2026, 10, 1)
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def nise_cloud(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("nise"), date(2026, 10, 1), date(2026, 10, 3), kinds=("azure", "gcp"))


def _rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> Decimal:
    try:
        return Decimal(text or 0)
    except InvalidOperation:
        return Decimal(0)


def _raw_azure_cost(storage: Path) -> Decimal:
    """Independent total: CostInBillingCurrency summed exactly over the export's rows of October."""
    total = Decimal(0)
    for path in storage.rglob("*.csv"):
        for row in _rows(path):
            day = row["Date"]
            if day.startswith("2026-10") or (day.startswith("10/") and day[:10].endswith("/2026")):
                total += _number(row["CostInBillingCurrency"])
    return total


def _raw_gcp(bucket: Path) -> tuple[Decimal, int]:
    """Independent total cost and row count of invoice month 202610 over the export's rows."""
    total, rows = Decimal(0), 0
    for path in bucket.rglob("*.csv"):
        for row in _rows(path):
            if row["invoice.month"] == "202610":
                total += _number(row["cost"])
                rows += 1
    return total, rows


def _create(harness: Harness, kind: str, src: Path, name: str) -> tuple[str, Path]:
    target = harness.buckets / name
    shutil.copytree(src, target)
    if kind == "azure-local":
        harness.admin.create_cost_source(kind, name, storage_account=str(target), resource_group="rg")
    else:
        harness.admin.create_cost_source(kind, name, bucket=str(target), dataset="billing")
    harness.settle()
    row = next(r for r in harness.table("api_sources", "source_id") if r["name"] == name)
    assert row["koku_uuid"], row["status"]
    _check(harness, [row["koku_uuid"]])
    return row["koku_uuid"], target


def _check(harness: Harness, uuids: list[str]) -> None:
    """The reachability checks of these providers (what ``source_reachability_sensor``'s runs do)."""
    check_providers(harness.engine, ReportAccess((harness.buckets,), lambda *_: None), uuids)


def _materialize(
    harness: Harness, instance: dg.DagsterInstance, uuid: str, *, force: bool = False
) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions("providers", [uuid])
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()}),
        resources=ingest_resources(harness),
        instance=instance,
        run_config=dg.RunConfig(ops={"report_manifest": ManifestConfig(force=force)}),
        raise_on_error=False,
    )


def _summary(harness: Harness, table: str, uuid: str, select: str) -> tuple:
    folder = harness.store.local_root / "data/summary" / table / f"source={uuid}" / "year=2026" / "month=10"
    files = [str(p) for p in sorted(folder.glob("*.parquet"))]
    assert files, folder
    with duckdb.connect() as con:
        return con.execute(f"SELECT {select} FROM read_parquet({files}, hive_partitioning = false)").fetchone()


def _checks(result: dg.ExecuteInJobResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


ALL_PASSED = {
    "summary_totals_match_raw": True,
    "no_rows_outside_month": True,
    "row_counts_consistent": True,
    "focus_billed_totals": True,
    "focus_mandatory_columns": True,
    "focus_allowed_values": True,
}


def test_sensor_requests_first_runs_for_azure_and_gcp_providers(harness: Harness, nise_cloud: dict[str, Path]) -> None:
    for kind, name in (("azure-local", "azure"), ("gcp-local", "gcp")):
        target = harness.buckets / name
        shutil.copytree(nise_cloud[name], target)
        if kind == "azure-local":
            harness.admin.create_cost_source(kind, name, storage_account=str(target), resource_group="rg")
        else:
            harness.admin.create_cost_source(kind, name, bucket=str(target), dataset="billing")
    with dg.instance_for_test() as instance:
        runs = []
        for _ in range(4):
            runs += _tick(harness, instance).run_requests or []
            _check(harness, [r["uuid"] for r in harness.table("api_provider", "uuid")])
        uuids = {r["koku_uuid"] for r in harness.table("api_sources", "source_id")}
        assert len(uuids) == 2 and None not in uuids
        requested = {r.partition_key.keys_by_dimension["provider"] for r in runs}  # type: ignore[union-attr]
        assert requested == uuids
        assert all(r.job_name == "provider_month_ingest" for r in runs)


def test_azure_event_to_summary_matches_the_raw_export(harness: Harness, nise_cloud: dict[str, Path]) -> None:
    uuid, storage = _create(harness, "azure-local", nise_cloud["azure"], "azure")
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid)
        assert result.success
        assert _checks(result) == ALL_PASSED
        daily = result.asset_materializations_for_node("daily_line_items")[0].metadata
        assert daily["applies"].value is False  # Azure summaries read the line items
        cost, rows, outside = _summary(
            harness,
            "reporting_azurecostentrylineitem_daily_summary",
            uuid,
            "sum(CAST(pretax_cost AS DECIMAL(38, 10))), count(*), "
            "count(*) FILTER (WHERE usage_start < DATE '2026-10-01' OR usage_start >= DATE '2026-11-01')",
        )
        assert abs(Decimal(cost) - _raw_azure_cost(storage)) < CENT and rows > 0 and outside == 0
        manifest = [
            m for m in harness.table("reporting_common_costusagereportmanifest", "id") if m["provider_id"] == uuid
        ]
        assert len(manifest) == 1 and manifest[0]["completed_datetime"] is not None
        assert (harness.store.local_root / "data/csv/org1234567/Azure" / f"source={uuid}").is_dir()

        again = _materialize(harness, instance, uuid)  # same export, fully processed: nothing to do
        assert again.success and not again.asset_materializations_for_node("line_items")
        forced = _materialize(harness, instance, uuid, force=True)
        assert forced.success and _checks(forced) == ALL_PASSED
        assert _summary(harness, "reporting_azurecostentrylineitem_daily_summary", uuid, "count(*)")[0] == rows
        with duckdb.connect(str(harness.store.local_root / "warehouse.duckdb"), read_only=True) as view:
            assert (
                view.execute("SELECT count(*) FROM reporting_azurecostentrylineitem_daily_summary").fetchone()[0]
                == rows
            )
            focus = view.execute("SELECT sum(BilledCost) FROM focus_costs WHERE x_SourceUuid = ?", [uuid]).fetchone()
            assert abs(Decimal(str(focus[0])) - _raw_azure_cost(storage)) < CENT


def test_gcp_event_to_summary_matches_the_raw_export(harness: Harness, nise_cloud: dict[str, Path]) -> None:
    uuid, bucket = _create(harness, "gcp-local", nise_cloud["gcp"], "gcp")
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid)
        assert result.success
        assert _checks(result) == ALL_PASSED
        total, raw_rows = _raw_gcp(bucket)
        line_meta = result.asset_materializations_for_node("line_items")[0].metadata
        assert line_meta["dagster/row_count"].value == raw_rows
        cost, months = _summary(
            harness,
            "reporting_gcpcostentrylineitem_daily_summary",
            uuid,
            "sum(CAST(unblended_cost AS DECIMAL(38, 10))), list(DISTINCT invoice_month)",
        )
        assert abs(Decimal(cost) - total) < CENT and months == ["202610"]
        assert (harness.store.local_root / "data/parquet/daily/org1234567/GCP/raw" / f"source={uuid}").is_dir()


def test_corrupt_azure_export_fails_its_partition_only(harness: Harness, nise_cloud: dict[str, Path]) -> None:
    bad_uuid, storage = _create(harness, "azure-local", nise_cloud["azure"], "broken")
    good_uuid, _ = _create(harness, "gcp-local", nise_cloud["gcp"], "fine")
    export = next(storage.rglob("*.csv"))
    rows = _rows(export)
    with export.open("w", newline="", encoding="utf-8") as handle:  # the cost column is gone
        writer = csv.DictWriter(handle, [k for k in rows[0] if k != "CostInBillingCurrency"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with dg.instance_for_test() as instance:
        failed = _materialize(harness, instance, bad_uuid)
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        assert "costinbillingcurrency" in failure.event_specific_data.error.message.lower()
        manifest = next(
            m for m in harness.table("reporting_common_costusagereportmanifest", "id") if m["provider_id"] == bad_uuid
        )
        assert "failed" in manifest["state"]["processing"]
        statuses = [
            s
            for s in harness.table("reporting_common_costusagereportstatus", "id")
            if s["manifest_id"] == manifest["id"]
        ]
        assert statuses and all(s["status"] == 2 for s in statuses)
        assert _materialize(harness, instance, good_uuid).success
    assert json.dumps(harness.table("api_sources", "source_id"), default=str).count("unavailable") == 0
