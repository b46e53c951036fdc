"""The ``GCP`` type against the real BigQuery emulator (local-bigquery): a nise export loaded into a
day-partitioned billing table, ingested through the Dagster assets and reconciled to the cent; re-exports,
table discovery and the reachability checks with their fixed messages."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from koku_dagster.assets.ingest import INGEST_ASSETS, ManifestConfig
from koku_dagster.ingest.reachability import check_providers
from koku_dagster.providers import gcp_bigquery as bq
from koku_dagster.providers.base import (
    CloudEndpoints,
    CredentialInputs,
    CredentialsError,
    ProviderContext,
    ReportAccess,
    SettingsError,
    Unreachable,
)
from koku_dagster.providers.gcp import GCP
from koku_dagster.reports.errors import IngestError
from koku_devtools.cloud_exports import create_gcp_billing_table, load_gcp_export
from koku_devtools.nise_reports import generate
from koku_devtools.services import LocalBigQuery
from koku_devtools.services.processes import free_port
from tests.conftest import Harness
from tests.resources import ingest_resources

PROJECT = "koku-gcp-test"
MONTH = date(2026, 10, 1)
CENT = Decimal("0.01")
RESOURCE_TABLE = "gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9"
STANDARD_TABLE = "gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"
CREDITS = [
    [{"name": "Sustained usage discount", "amount": -0.0123456789, "id": "s", "type": "SUSTAINED_USAGE_DISCOUNT"}],
    [{"name": "Free tier", "amount": -0.5, "type": "FREE_TIER"}, {"name": "Promo", "amount": -0.25}],
]
_datasets = itertools.count()


@pytest.fixture(scope="module")
def nise_gcp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nise GCP export (Oct 1-3, 2026) with credits on every 5th row and 4 rows of invoice month 202609."""
    root = tmp_path_factory.mktemp("nise-gcp")
    (path,) = sorted(generate(root, date(2026, 10, 1), date(2026, 10, 3), kinds=("gcp",))["gcp"].rglob("*.csv"))
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    credits, invoice = header.index("credits"), header.index("invoice.month")
    for i, row in enumerate(rows):
        if i % 5 == 0:
            row[credits] = json.dumps(CREDITS[i % 2])
    for row in rows[-4:]:
        row[invoice] = "202609"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def _raw(path: Path, days: set[str] | None = None) -> tuple[int, Decimal, Decimal]:
    """Rows, exact cost and exact credits of invoice month 202610 in the export's text (optionally some days)."""
    rows, cost, credit = 0, Decimal(0), Decimal(0)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["invoice.month"] == "202610" and (days is None or row["partition_date"] in days):
                rows += 1
                cost += Decimal(row["cost"])
                credit += sum((Decimal(str(c["amount"])) for c in json.loads(row["credits"] or "[]")), Decimal(0))
    return rows, cost, credit


def _days(path: Path, invoice_month: str) -> list[str]:
    """The partition days holding rows of ``invoice_month`` in the export."""
    with path.open(newline="", encoding="utf-8") as fh:
        return sorted({r["partition_date"] for r in csv.DictReader(fh) if r["invoice.month"] == invoice_month})


def _dataset(local_bigquery: LocalBigQuery, *tables: str, partitioned: bool = True) -> str:
    """A new dataset holding empty billing tables ``tables``."""
    name = f"billing_{next(_datasets)}"
    client = local_bigquery.client(PROJECT)
    client.create_dataset(f"{PROJECT}.{name}")
    for table in tables:
        create_gcp_billing_table(client, f"{PROJECT}.{name}.{table}", day_partitioned=partitioned)
    return name


def _ctx(dataset: str, **data_source: Any) -> ProviderContext:
    return ProviderContext(
        uuid="5a0f9a55-55b6-4f4e-9d0a-6a1c2b3d4e5f",
        name="gcp",
        type="GCP",
        schema="org1234567",
        credentials={"project_id": PROJECT},
        data_source={"dataset": dataset, **data_source},
        setup_complete=False,
        active=True,
        paused=False,
    )


def _access(endpoint: str) -> ReportAccess:
    return ReportAccess((), lambda *_: None, CloudEndpoints(gcp_bigquery_url=endpoint))


def _unreachable(ctx: ProviderContext, endpoint: str) -> str:
    with pytest.raises(Unreachable) as failed:
        GCP.check_reachable(ctx, _access(endpoint))
    return str(failed.value)


# --------------------------------------------------------------------------- through the assets


def _materialize(harness: Harness, instance: dg.DagsterInstance, uuid: str, endpoint: str) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions("providers", [uuid])
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()}),
        resources=ingest_resources(harness, gcp_bigquery_url=endpoint),
        instance=instance,
        run_config=dg.RunConfig(ops={"report_manifest": ManifestConfig()}),
        raise_on_error=False,
    )


def _sums(harness: Harness, folder: str, uuid: str, select: str) -> tuple[Any, ...]:
    path = harness.store.local_root / "data" / folder / f"source={uuid}" / "year=2026" / "month=10"
    files = [str(p) for p in sorted(path.glob("*.parquet"))]
    assert files, path
    with duckdb.connect() as con:
        row = con.execute(f"SELECT {select} FROM read_parquet({files}, hive_partitioning = false)").fetchone()
    assert row is not None
    return tuple(row)


def _assert_reconciled(harness: Harness, uuid: str, raw: tuple[int, Decimal, Decimal]) -> None:
    rows, cost, credit = raw
    summary = _sums(
        harness,
        "summary/reporting_gcpcostentrylineitem_daily_summary",
        uuid,
        "sum(CAST(unblended_cost AS DECIMAL(38, 12))), sum(CAST(credit_amount AS DECIMAL(38, 12))), "
        "list(DISTINCT invoice_month)",
    )
    assert abs(summary[0] - cost) < CENT and abs(summary[1] - credit) < CENT and summary[2] == ["202610"]
    focus = _sums(harness, "focus", uuid, "sum(CAST(BilledCost AS DECIMAL(38, 12))), list(DISTINCT x_KokuProviderType)")
    assert abs(focus[0] - (cost + credit)) < CENT and focus[1] == ["GCP"]


def _create_source(harness: Harness, dataset: str, endpoint: str) -> str:
    """A ``google`` source through Platform Sources; its provider passes its reachability check."""
    harness.admin.create_cost_source("gcp", "bigquery", dataset=dataset, project_id=PROJECT)
    harness.settle()
    (row,) = harness.table("api_sources", "source_id")
    assert row["source_type"] == "GCP" and row["koku_uuid"], row["status"]
    uuid = str(row["koku_uuid"])
    access = ReportAccess((harness.buckets,), lambda *_: None, CloudEndpoints(gcp_bigquery_url=endpoint))
    (outcome,) = check_providers(harness.engine, access, [uuid])
    assert outcome.reachable and outcome.recorded, outcome
    return uuid


def _meta(result: dg.ExecuteInJobResult, node: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_bigquery_month_through_the_assets_matches_the_raw_rows(
    harness: Harness, local_bigquery: LocalBigQuery, nise_gcp: Path
) -> None:
    dataset = _dataset(local_bigquery, RESOURCE_TABLE)
    client = local_bigquery.client(PROJECT)
    load_gcp_export(client, f"{PROJECT}.{dataset}.{RESOURCE_TABLE}", nise_gcp)
    uuid = _create_source(harness, dataset, local_bigquery.endpoint)
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid, local_bigquery.endpoint)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
        manifest = _meta(result, "report_manifest")
        days = _days(nise_gcp, "202610")
        assert manifest["files"] == len(days) >= 2 and manifest["report_name"] == RESOURCE_TABLE
        assert _meta(result, "line_items")["dagster/row_count"] == _raw(nise_gcp)[0]
        _assert_reconciled(harness, uuid, _raw(nise_gcp))
        archive = harness.store.local_root / "data/csv/org1234567/GCP" / f"source={uuid}" / "year=2026/month=10"
        assert sorted(p.name for p in archive.iterdir()) == [f"202610_{d}.csv" for d in days]

        again = _materialize(harness, instance, uuid, local_bigquery.endpoint)  # nothing new in BigQuery
        assert again.success and not again.asset_materializations_for_node("line_items")

        # A re-export of the first day: its rows again with a later export time (the export appends them).
        later = datetime(2026, 10, 20, 6, tzinfo=UTC)
        added = load_gcp_export(client, f"{PROJECT}.{dataset}.{RESOURCE_TABLE}", nise_gcp, export_time=later,
                                days={date.fromisoformat(days[0])})  # fmt: skip
        assert added > 0
        reexported = _materialize(harness, instance, uuid, local_bigquery.endpoint)
        assert reexported.success
        assert _meta(reexported, "report_manifest")["assembly_id"] != manifest["assembly_id"]
        rows, cost, credit = _raw(nise_gcp)
        day_rows, day_cost, day_credit = _raw(nise_gcp, {days[0]})
        assert _meta(reexported, "line_items")["dagster/row_count"] == rows + day_rows
        _assert_reconciled(harness, uuid, (rows + day_rows, cost + day_cost, credit + day_credit))
        records = [
            m for m in harness.table("reporting_common_costusagereportmanifest", "id") if m["provider_id"] == uuid
        ]
        assert len(records) == 1 and records[0]["assembly_id"] == _meta(reexported, "report_manifest")["assembly_id"]
        fetched = _meta(reexported, "report_files")
        assert fetched["files"] == len(days)
        assert (fetched["fetched"], fetched["unchanged"]) == (1, len(days) - 1)  # only the re-exported day


# --------------------------------------------------------------------------- the reader without the assets


def test_day_files_hold_the_days_rows_as_export_csv(local_bigquery: LocalBigQuery, nise_gcp: Path) -> None:
    dataset = _dataset(local_bigquery, RESOURCE_TABLE)
    client = local_bigquery.client(PROJECT)
    load_gcp_export(client, f"{PROJECT}.{dataset}.{RESOURCE_TABLE}", nise_gcp)
    source = GCP.report_source(_ctx(dataset), _access(local_bigquery.endpoint))
    manifest = source.find_manifest(MONTH)
    assert manifest is not None and manifest.billing_period_start == MONTH
    key = f"{RESOURCE_TABLE}/202610_2026-10-01.csv"
    assert [f.key for f in manifest.files][0] == key
    with source.open_file(key) as fh:
        rows = list(csv.DictReader(fh.read().decode().splitlines()))
    expected, cost, _ = _raw(nise_gcp, {"2026-10-01"})
    assert len(rows) == expected and abs(sum(Decimal(r["cost"]) for r in rows) - cost) < CENT
    assert {r["partition_date"] for r in rows} == {"2026-10-01"} and {r["invoice.month"] for r in rows} == {"202610"}
    labelled = next(r for r in rows if r["labels"] != "[]")
    assert json.loads(labelled["labels"])[0].keys() == {"key", "value"}
    assert any(json.loads(r["credits"]) for r in rows) and rows[0]["resource.name"] == ""
    september = source.find_manifest(date(2026, 9, 1))  # the 4 rows of invoice month 202609
    expected_keys = [f"{RESOURCE_TABLE}/202609_{d}.csv" for d in _days(nise_gcp, "202609")]
    assert september is not None and [f.key for f in september.files] == expected_keys
    assert source.find_manifest(date(2026, 12, 1)) is None
    with pytest.raises(IngestError):
        source.open_file(f"{RESOURCE_TABLE}/202610_2026-10-09.csv")  # no such partition day
    with pytest.raises(IngestError):
        source.open_file("other_table/202610_2026-10-01.csv")


# --------------------------------------------------------------------------- discovery and reachability


def test_table_discovery_without_table_id(local_bigquery: LocalBigQuery) -> None:
    endpoint = local_bigquery.endpoint
    both = _dataset(local_bigquery, STANDARD_TABLE, RESOURCE_TABLE, "unrelated")
    GCP.check_reachable(_ctx(both), _access(endpoint))
    assert GCP._reader(_ctx(both), _access(endpoint)).table().table_id == RESOURCE_TABLE
    standard = _dataset(local_bigquery, STANDARD_TABLE)
    assert GCP._reader(_ctx(standard), _access(endpoint)).table().table_id == STANDARD_TABLE
    assert GCP._reader(_ctx(both, table_id=STANDARD_TABLE), _access(endpoint)).table().table_id == STANDARD_TABLE
    assert _unreachable(_ctx(_dataset(local_bigquery, "unrelated")), endpoint) == bq.TABLE_NOT_READY
    assert _unreachable(_ctx(both, table_id="gone"), endpoint) == f"Unable to find table: gone in dataset: {both}"
    assert GCP.report_source(_ctx(standard), _access(endpoint)).find_manifest(MONTH) is None  # empty table


def test_missing_dataset_is_unreachable(local_bigquery: LocalBigQuery) -> None:
    message = _unreachable(_ctx("no_such_dataset"), local_bigquery.endpoint)
    assert message == f"Unable to find dataset: no_such_dataset in project: {PROJECT}"
    other_project = _unreachable(_ctx("other-project-1:no_such_dataset"), local_bigquery.endpoint)
    assert other_project == "Unable to find dataset: no_such_dataset in project: other-project-1"
    with pytest.raises(IngestError, match="^Unable to find dataset"):
        GCP.report_source(_ctx("no_such_dataset"), _access(local_bigquery.endpoint)).find_manifest(MONTH)


def test_table_without_day_partitioning_is_unreachable(local_bigquery: LocalBigQuery) -> None:
    dataset = _dataset(local_bigquery, RESOURCE_TABLE, partitioned=False)
    assert _unreachable(_ctx(dataset), local_bigquery.endpoint) == "table not correctly partitioned by day"


def test_table_missing_columns_is_unreachable(local_bigquery: LocalBigQuery) -> None:
    dataset = _dataset(local_bigquery)
    local_bigquery.client(PROJECT).query_and_wait(
        f"CREATE TABLE `{PROJECT}.{dataset}.{RESOURCE_TABLE}` (billing_account_id STRING, cost FLOAT64, "
        "invoice STRUCT<month STRING>, export_time TIMESTAMP, usage_start_time TIMESTAMP) PARTITION BY _PARTITIONDATE"
    )
    message = _unreachable(_ctx(dataset), local_bigquery.endpoint)
    assert message.startswith("table missing expected columns: service.id, service.description, sku.id")
    assert "cost," not in message and "resource.name" not in message


def test_refused_settings_and_an_unreachable_endpoint(
    local_bigquery: LocalBigQuery, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = local_bigquery.endpoint
    assert _unreachable(_ctx("bad-dataset!"), endpoint) == bq.INVALID_DATASET
    assert _unreachable(_ctx("billing", table_id="a b"), endpoint) == bq.INVALID_TABLE
    with pytest.raises(SettingsError, match="Invalid Dataset ID"):
        GCP.check_settings({"project_id": PROJECT}, {"dataset": "x;DROP"})
    with pytest.raises(SettingsError, match="Invalid project ID"):
        GCP.check_settings({"project_id": "Not A Project"}, {"dataset": "billing"})
    GCP.check_settings({"project_id": PROJECT}, {"dataset": "billing", "table_id": RESOURCE_TABLE})
    assert _unreachable(_ctx("", storage_only=True), endpoint) == bq.BUCKET_MISSING
    GCP.check_reachable(_ctx("", storage_only=True, bucket="b"), _access(endpoint))  # GCS buckets are not read
    monkeypatch.setattr(bq, "CALL_DEADLINE", 1.0)
    assert _unreachable(_ctx("billing"), f"http://127.0.0.1:{free_port()}") == bq.UNREACHABLE


# --------------------------------------------------------------------------- the service account key


def _service_account_json(token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem.decode(),
        "client_email": f"koku@{PROJECT}.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
    })  # fmt: skip


def test_service_account_key_is_kept_as_a_secret(
    local_bigquery: LocalBigQuery, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = _service_account_json(f"http://127.0.0.1:{free_port()}/token")
    private = json.loads(secret)["private_key"].splitlines()[1]
    credentials = GCP.shape_credentials(CredentialInputs(username=PROJECT, password=secret))
    assert credentials == {"project_id": PROJECT, "service_account_json": secret}
    assert GCP.shape_credentials(CredentialInputs(username=PROJECT)) == {"project_id": PROJECT}
    with pytest.raises(CredentialsError) as refused:
        GCP.shape_credentials(CredentialInputs(username=PROJECT, password='{"private_key": "sekrit-value"}'))
    assert str(refused.value) == bq.INVALID_SERVICE_ACCOUNT and "sekrit" not in repr(refused.value)

    ctx = dataclasses.replace(_ctx("billing"), credentials=credentials)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(bq, "CALL_DEADLINE", 1.0)
    reader = GCP.report_source(ctx, _access(local_bigquery.endpoint))
    with pytest.raises(IngestError) as failed:  # the key is used: its token endpoint does not answer
        reader.find_manifest(MONTH)
    message = _unreachable(ctx, local_bigquery.endpoint)
    assert message in (bq.UNREACHABLE, bq.CREDENTIALS) and str(failed.value) == message
    for text in (repr(reader), repr(ctx), str(failed.value), caplog.text):
        assert private not in text and "BEGIN PRIVATE KEY" not in text
