"""Azure and GCP ingestion cores on real nise exports: discovery, conversion, summaries, totals, bad input."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pytest

from koku_dagster.providers import azure, gcp
from koku_dagster.providers.azure import LocalAzureExports
from koku_dagster.providers.gcp import LocalGcpExports
from koku_dagster.reports.errors import (
    CorruptReportError,
    IngestError,
    ManifestError,
    ReportFormatError,
    UnsafeReportPathError,
)
from koku_dagster.reports.paths import daily_dir, line_items_dir, summary_dir

OCTOBER = date(2026, 10, 1)
NOVEMBER = date(2026, 11, 1)
SCHEMA = "org1234567"
UUID = "3f1c2a9e-7b44-4d0e-8c21-5a6b7c8d9e01"
NISE = str(Path(sys.executable).with_name("nise"))
CENT = Decimal("0.01")
OLD_AZURE_NAMES = {
    "Date": "UsageDateTime",
    "CostInBillingCurrency": "PreTaxCost",
    "Quantity": "UsageQuantity",
    "SubscriptionId": "SubscriptionGuid",
    "ResourceId": "InstanceId",
    "ResourceGroupName": "ResourceGroup",
    "BillingCurrency": "Currency",
    "EffectivePrice": "ResourceRate",
}
#: Credits injected into the GCP export (nise writes none): every 7th row, varying amounts.
CREDITS = [
    [{"name": "Sustained usage discount", "amount": -0.0123456789, "id": "s", "type": "SUSTAINED_USAGE_DISCOUNT"}],
    [{"name": "Free tier", "amount": -0.5, "type": "FREE_TIER"}, {"name": "Promo", "amount": -0.25}],
    [{"name": "Committed use", "amount": -1.0000001, "type": "COMMITTED_USAGE_DISCOUNT"}],
]
OTHER_INVOICE_ROWS = 5  # rows of the GCP export moved to invoice month 202609


def _nise(scratch: Path, *args: str) -> None:
    scratch.mkdir(parents=True, exist_ok=True)  # nise writes temporary files into its cwd
    subprocess.run([NISE, *args], cwd=scratch, check=True, capture_output=True, timeout=120)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _only_csv(root: Path) -> Path:
    (path,) = sorted(root.rglob("*.csv"))
    return path


@pytest.fixture(scope="module")
def azure_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nise Azure export (Oct 1-4, 2026): ``{dir}/cost/20261001-20261031/costreport_<uuid>.csv``."""
    root = tmp_path_factory.mktemp("nise-azure")
    storage = root / "storage"
    storage.mkdir()
    _nise(root / "scratch", "report", "azure", "-s", "2026-10-01", "-e", "2026-10-04",
          "--azure-container-name", str(storage), "--azure-report-name", "cost")  # fmt: skip
    return storage


@pytest.fixture(scope="module")
def gcp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nise GCP export (Oct 1-4, 2026) with credits injected and a few rows of invoice month 202609."""
    root = tmp_path_factory.mktemp("nise-gcp")
    bucket = root / "bucket"
    bucket.mkdir()
    _nise(root / "scratch", "report", "gcp", "-s", "2026-10-01", "-e", "2026-10-04", "--gcp-bucket-name", str(bucket))
    path = _only_csv(bucket)
    header, rows = _read_csv(path)
    credits, invoice = header.index("credits"), header.index("invoice.month")
    for i, row in enumerate(rows):
        if i % 7 == 0:
            row[credits] = json.dumps(CREDITS[i % len(CREDITS)])
    for row in rows[-OTHER_INVOICE_ROWS:]:
        row[invoice] = "202609"
    _write_csv(path, header, rows)
    return bucket


def _copy(src: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(src, target, symlinks=True)
    return target


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@dataclass
class RawAzure:
    """Independent figures from the CSV text (csv module + Decimal)."""

    lines: int
    rows: int
    pretax: Decimal


def _raw_azure(path: Path) -> RawAzure:
    header, rows = _read_csv(path)
    lines = len(path.read_text(encoding="utf-8").splitlines()) - 1
    names = [h.lower() for h in header]
    cost = names.index("costinbillingcurrency") if "costinbillingcurrency" in names else names.index("pretaxcost")
    total = sum((d for r in rows if (d := _decimal(r[cost])) is not None), start=Decimal(0))
    return RawAzure(lines, len(rows), total)


def _azure_run(storage: Path, out: Path, export_name: str | None = None) -> azure.MonthTotals:
    source = LocalAzureExports(storage, export_name)
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None
    azure.AZURE.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=out)
    azure.AZURE.build_summary(schema=SCHEMA, provider_uuid=UUID, month=OCTOBER, out_root=out, work_dir=out / "work")
    return azure.AZURE.month_totals(schema=SCHEMA, provider_uuid=UUID, month=OCTOBER, out_root=out)


def _summary_rows(out: Path, table: str) -> list[tuple[object, ...]]:
    """Every row of a summary partition, sorted."""
    folder = summary_dir(out, table, UUID, OCTOBER)
    query = f"SELECT * FROM read_parquet('{folder}/*.parquet', hive_partitioning = false) ORDER BY ALL"
    return duckdb.sql(query).fetchall()


def _close(got: Decimal, want: Decimal) -> bool:
    return abs(got - want) < CENT / 2


# ---------------------------------------------------------------- Azure


def test_azure_discovery(azure_dir: Path, tmp_path: Path) -> None:
    csv_file = _only_csv(azure_dir)
    assert csv_file.parent.name == "20261001-20261031"
    manifest = LocalAzureExports(azure_dir).find_manifest(OCTOBER)
    assert manifest is not None
    assert manifest.assembly_id == csv_file.stem.removeprefix("costreport_")
    assert manifest.billing_period_start == OCTOBER and manifest.report_name == "cost"
    assert [f.local_path for f in manifest.files] == [csv_file.resolve()]
    assert LocalAzureExports(azure_dir, "cost").find_manifest(OCTOBER) == manifest
    assert LocalAzureExports(azure_dir, "other").find_manifest(OCTOBER) is None  # missing export folder
    assert LocalAzureExports(azure_dir).find_manifest(NOVEMBER) is None  # missing month folder

    # A newer CSV in the folder replaces the older one; a JSON manifest wins over CSVs.
    storage = _copy(azure_dir, tmp_path)
    month_dir = storage / "cost/20261001-20261031"
    newer = month_dir / f"costreport_{uuid.uuid4()}.csv"
    shutil.copy(month_dir / csv_file.name, newer)
    os.utime(newer, (2e9, 2e9))
    assert LocalAzureExports(storage).find_manifest(OCTOBER).files[0].name == newer.name  # type: ignore[union-attr]
    run_id = str(uuid.uuid4())
    (month_dir / run_id).mkdir()
    part = month_dir / run_id / "part_0_0001.csv"
    shutil.copy(newer, part)
    blob = f"cost/20261001-20261031/{run_id}/part_0_0001.csv"
    doc = {"runInfo": {"runId": run_id}, "blobs": [{"blobName": blob}]}
    (month_dir / run_id / "manifest.json").write_text(json.dumps(doc))
    manifest = LocalAzureExports(storage).find_manifest(OCTOBER)
    assert manifest is not None and manifest.assembly_id == run_id
    assert [f.key for f in manifest.files] == [blob]

    # Without an export name every export folder is read (one manifest, files of both).
    second = tmp_path / "two"
    shutil.copytree(azure_dir / "cost", second / "cost")
    shutil.copytree(azure_dir / "cost", second / "other")
    other_month = second / "other/20261001-20261031"
    (other_month / csv_file.name).rename(other_month / f"costreport_{uuid.uuid4()}.csv")
    both = LocalAzureExports(second).find_manifest(OCTOBER)
    assert both is not None and len(both.files) == 2 and both.report_name == "cost,other"


def test_azure_pipeline_matches_the_raw_export(azure_dir: Path, tmp_path: Path) -> None:
    raw = _raw_azure(_only_csv(azure_dir))
    totals = _azure_run(azure_dir, tmp_path / "out")
    assert raw.lines == raw.rows == totals.source_rows == totals.line_item_rows > 0
    assert totals.rows_outside_month == totals.rows_without_usage_start == totals.uncast_cells == 0
    assert totals.raw_pretax_cost == raw.pretax  # exact
    assert _close(totals.summary_pretax_cost, raw.pretax) and totals.costs_match
    assert totals.summary_rows > 0 and totals.summary_rows_outside_month == 0
    rows = duckdb.sql(
        f"SELECT usage_start, subscription_guid, service_name, resource_location, instance_type, unit_of_measure, "
        f"usage_quantity, pretax_cost, currency, instance_count, tags, source_uuid "
        f"FROM read_parquet('{summary_dir(tmp_path / 'out', azure.SUMMARY_TABLE, UUID, OCTOBER)}/*.parquet')"
    ).fetchall()
    assert all(r[-1] == UUID and r[8] == "USD" and json.loads(r[10]) is not None for r in rows)
    assert {r[0] for r in rows} <= {date(2026, 10, d) for d in range(1, 5)}


def test_azure_old_schema_gives_the_same_summary(azure_dir: Path, tmp_path: Path) -> None:
    storage = _copy(azure_dir, tmp_path, "old")
    path = _only_csv(storage)
    header, rows = _read_csv(path)
    day, tags = header.index("Date"), header.index("Tags")
    for row in rows:  # older exports: US dates, tags without braces
        y, m, d = row[day].split("-")
        row[day] = f"{m}/{d}/{y}"
        row[tags] = row[tags].strip().removeprefix("{").removesuffix("}")
    _write_csv(path, [OLD_AZURE_NAMES.get(h, h) for h in header], rows)
    new_totals = _azure_run(azure_dir, tmp_path / "new-out")
    old_totals = _azure_run(storage, tmp_path / "old-out")
    assert old_totals == new_totals
    assert _summary_rows(tmp_path / "old-out", azure.SUMMARY_TABLE) == _summary_rows(
        tmp_path / "new-out", azure.SUMMARY_TABLE
    )


def test_azure_rerun_is_idempotent(azure_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _azure_run(azure_dir, out)
    before = sorted(p.relative_to(out) for p in (out / "data").rglob("*.parquet"))
    second = _azure_run(azure_dir, out)
    assert second == first
    assert sorted(p.relative_to(out) for p in (out / "data").rglob("*.parquet")) == before
    assert not list((out / "data").rglob(".*"))  # no staging leftovers


def test_azure_non_numeric_cost_fails_and_other_bad_cells_are_counted(azure_dir: Path, tmp_path: Path) -> None:
    storage = _copy(azure_dir, tmp_path)
    path = _only_csv(storage)
    header, rows = _read_csv(path)
    rows[0][header.index("Quantity")] = "n/a"
    rows[1][header.index("Tags")] = "{not json"
    _write_csv(path, header, rows)
    raw = _raw_azure(path)
    totals = _azure_run(storage, tmp_path / "out")
    assert totals.uncast_cells == 2 and totals.line_item_rows == raw.rows
    assert totals.raw_pretax_cost == raw.pretax and totals.costs_match

    rows[2][header.index("CostInBillingCurrency")] = "n/a"
    _write_csv(path, header, rows)
    with pytest.raises(ReportFormatError, match=r"non-numeric costinbillingcurrency value 'n/a'"):
        _azure_run(storage, tmp_path / "out2")


def test_azure_missing_columns_and_truncated_file(azure_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _azure_run(azure_dir, out)
    partition = line_items_dir(out, SCHEMA, "Azure", UUID, OCTOBER)
    before = sorted(partition.iterdir())

    storage = _copy(azure_dir, tmp_path, "no-cost")
    path = _only_csv(storage)
    header, rows = _read_csv(path)
    keep = [i for i, h in enumerate(header) if h != "CostInBillingCurrency"]
    _write_csv(path, [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    with pytest.raises(ReportFormatError, match="costinbillingcurrency"):
        _azure_run(storage, out)

    storage = _copy(azure_dir, tmp_path, "truncated")
    path = _only_csv(storage)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) * 2 // 3) + 5])  # cut in the middle of a row
    with pytest.raises(CorruptReportError):
        _azure_run(storage, out)
    assert sorted(partition.iterdir()) == before  # the previous partition is untouched


def test_azure_unsafe_paths(azure_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafeReportPathError):
        LocalAzureExports(azure_dir, "../cost")
    with pytest.raises(IngestError):
        LocalAzureExports(tmp_path / "missing")
    storage = _copy(azure_dir, tmp_path)
    run_dir = storage / "cost/20261001-20261031" / str(uuid.uuid4())
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"blobs": [{"blobName": "../../secret.csv"}]}))
    with pytest.raises(UnsafeReportPathError):
        LocalAzureExports(storage).find_manifest(OCTOBER)
    (run_dir / "manifest.json").write_text("{broken")
    with pytest.raises(ManifestError):
        LocalAzureExports(storage).find_manifest(OCTOBER)
    outside = tmp_path / "outside"
    shutil.copytree(azure_dir / "cost", outside)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "cost").symlink_to(outside)
    with pytest.raises(UnsafeReportPathError):
        LocalAzureExports(linked).find_manifest(OCTOBER)


# ---------------------------------------------------------------- GCP


@dataclass
class RawGcp:
    """Independent figures from the CSV text of one invoice month (csv module + Decimal)."""

    lines: int
    rows: int
    other_month: int
    cost: Decimal
    credits: Decimal


def _raw_gcp(path: Path, invoice_month: str = "202610") -> RawGcp:
    header, rows = _read_csv(path)
    lines = len(path.read_text(encoding="utf-8").splitlines()) - 1
    cost, credits, invoice = header.index("cost"), header.index("credits"), header.index("invoice.month")
    mine = [r for r in rows if r[invoice] == invoice_month]
    total_cost = sum((d for r in mine if (d := _decimal(r[cost])) is not None), start=Decimal(0))
    total_credits = sum(
        (Decimal(str(c["amount"])) for r in mine for c in json.loads(r[credits] or "[]")), start=Decimal(0)
    )
    return RawGcp(lines, len(rows), len(rows) - len(mine), total_cost, total_credits)


def _gcp_run(bucket: Path, out: Path) -> gcp.MonthTotals:
    source = LocalGcpExports(bucket)
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None
    gcp.GCP.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=out)
    gcp.GCP.build_daily(schema=SCHEMA, provider_uuid=UUID, month=OCTOBER, out_root=out, work_dir=out / "work")
    gcp.GCP.build_summary(schema=SCHEMA, provider_uuid=UUID, month=OCTOBER, out_root=out, work_dir=out / "work")
    return gcp.GCP.month_totals(schema=SCHEMA, provider_uuid=UUID, month=OCTOBER, out_root=out)


def test_gcp_discovery_and_reexport(gcp_dir: Path, tmp_path: Path) -> None:
    path = _only_csv(gcp_dir)
    manifest = LocalGcpExports(gcp_dir).find_manifest(OCTOBER)
    assert manifest is not None and manifest.billing_period_start == OCTOBER
    assert [f.local_path for f in manifest.files] == [path.resolve()]
    assert LocalGcpExports(gcp_dir).find_manifest(OCTOBER) == manifest  # stable id
    assert LocalGcpExports(gcp_dir).find_manifest(NOVEMBER) is None  # only an October file

    bucket = _copy(gcp_dir, tmp_path)
    old_id = LocalGcpExports(bucket).find_manifest(OCTOBER).assembly_id  # type: ignore[union-attr]
    new_uuid = str(uuid.uuid4())
    old_uuid = path.parent.name
    reexport = bucket / new_uuid / path.name.replace(old_uuid, new_uuid)
    reexport.parent.mkdir()
    shutil.copy(path, reexport)
    os.utime(reexport, (2e9, 2e9))
    manifest = LocalGcpExports(bucket).find_manifest(OCTOBER)
    assert manifest is not None and manifest.assembly_id != old_id
    assert [f.local_path for f in manifest.files] == [reexport.resolve()]  # the re-export replaces the old one


def test_gcp_pipeline_matches_the_raw_export(gcp_dir: Path, tmp_path: Path) -> None:
    raw = _raw_gcp(_only_csv(gcp_dir))
    assert raw.credits < 0 and raw.other_month == OTHER_INVOICE_ROWS
    out = tmp_path / "out"
    totals = _gcp_run(gcp_dir, out)
    assert raw.lines == raw.rows == totals.source_rows
    assert totals.line_item_rows == raw.rows - raw.other_month
    assert totals.rows_other_invoice_month == raw.other_month
    assert totals.rows_without_usage_start == totals.uncast_cells == 0
    assert totals.raw_cost == raw.cost and totals.raw_credits == raw.credits  # exact
    assert _close(totals.summary_cost, raw.cost) and _close(totals.summary_credits, raw.credits)
    assert _close(totals.daily_cost, raw.cost) and totals.costs_match
    assert totals.summary_rows_other_invoice_month == 0 and 0 < totals.summary_rows <= totals.daily_rows
    assert daily_dir(out, SCHEMA, "GCP", UUID, OCTOBER).is_dir()
    rows = _summary_rows(out, gcp.SUMMARY_TABLE)
    assert rows and all(r[-1] == UUID for r in rows)
    tags = duckdb.sql(
        f"SELECT DISTINCT tags FROM read_parquet('{summary_dir(out, gcp.SUMMARY_TABLE, UUID, OCTOBER)}/*.parquet')"
    ).fetchall()
    assert all(isinstance(json.loads(t), dict) for (t,) in tags)
    assert any(json.loads(t) for (t,) in tags)


def test_gcp_rerun_is_idempotent(gcp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _gcp_run(gcp_dir, out)
    files = sorted(p.relative_to(out) for p in (out / "data").rglob("*.parquet"))
    assert _gcp_run(gcp_dir, out) == first
    assert sorted(p.relative_to(out) for p in (out / "data").rglob("*.parquet")) == files


def test_gcp_bad_input(gcp_dir: Path, tmp_path: Path) -> None:
    bucket = _copy(gcp_dir, tmp_path, "bad-cost")
    path = _only_csv(bucket)
    header, rows = _read_csv(path)
    rows[0][header.index("usage.amount")] = "twelve"
    rows[1][header.index("credits")] = "[{broken"
    rows[1][header.index("invoice.month")] = "202610"
    _write_csv(path, header, rows)
    totals = _gcp_run(bucket, tmp_path / "out")
    cost, invoice = header.index("cost"), header.index("invoice.month")
    want = sum((d for r in rows if r[invoice] == "202610" and (d := _decimal(r[cost])) is not None), start=Decimal(0))
    assert totals.uncast_cells == 2 and totals.raw_cost == want  # "twelve" and the broken credits, counted
    assert _close(totals.summary_cost, want) and totals.costs_match
    rows[0][cost] = "twelve"
    _write_csv(path, header, rows)
    with pytest.raises(ReportFormatError, match=r"non-numeric cost value 'twelve'"):
        _gcp_run(bucket, tmp_path / "out2")

    bucket = _copy(gcp_dir, tmp_path, "no-invoice")
    path = _only_csv(bucket)
    header, rows = _read_csv(path)
    keep = [i for i, h in enumerate(header) if h != "invoice.month"]
    _write_csv(path, [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    with pytest.raises(ReportFormatError, match="invoice_month"):
        _gcp_run(bucket, tmp_path / "out")

    bucket = _copy(gcp_dir, tmp_path, "truncated")
    path = _only_csv(bucket)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) // 2) + 5])  # cut in the middle of a row
    with pytest.raises(CorruptReportError):
        _gcp_run(bucket, tmp_path / "out")

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "202610_00000000-0000-0000-0000-000000000000_x.csv").symlink_to(_only_csv(gcp_dir))
    with pytest.raises(UnsafeReportPathError):
        LocalGcpExports(linked).find_manifest(OCTOBER)
    with pytest.raises(IngestError):
        LocalGcpExports(tmp_path / "missing")


def test_gcp_files_that_would_share_a_line_item_file_are_refused(gcp_dir: Path, tmp_path: Path) -> None:
    bucket = _copy(gcp_dir, tmp_path, "clash")
    export = _only_csv(bucket)
    (bucket / "a").mkdir()
    (bucket / "b").mkdir()
    shutil.copy(export, bucket / "a" / "billing.csv")
    with gzip.open(bucket / "b" / "billing.csv.gz", "wb") as out:
        out.write(export.read_bytes())
    with pytest.raises(ManifestError, match=r"share a line-item file name \(billing.parquet\)"):
        _gcp_run(bucket, tmp_path / "out")
    assert not (tmp_path / "out" / "data").exists()
