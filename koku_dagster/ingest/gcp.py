"""GCP cost ingestion, one step per function, for one provider and *invoice* month.

Steps: ``source.find_manifest(month)`` -> :func:`convert_manifest` (export CSV -> line-item Parquet,
rows of the invoice month only) -> :func:`build_daily` -> :func:`build_summary`
(``reporting_gcpcostentrylineitem_daily_summary``) -> :func:`month_totals`. Every partition is filed
under the invoice month (its usage days may lie before it) and replaced whole. No Dagster imports here.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from koku_dagster.ingest.aws_columns import TIMESTAMP_TYPE
from koku_dagster.ingest.aws_source import Manifest, ReportFiles
from koku_dagster.ingest.csv_exports import CsvTable, FileStats, convert_files, export_footer_stats
from koku_dagster.ingest.month_tables import build_table, column_sums, rows_not_equal
from koku_dagster.ingest.months import month_bounds
from koku_dagster.ingest.paths import daily_dir, line_items_dir, parquet_files, summary_dir
from koku_dagster.ingest.results import CostTotals, LineItemsResult, TableResult, match_to_cent

PROVIDER_TYPE = "GCP"
DAILY_SQL = "gcp_line_items_daily"
SUMMARY_TABLE = "reporting_gcpcostentrylineitem_daily_summary"
USAGE_START = "usage_start_time"
COST = "cost"
CREDIT_AMOUNT = "credit_amount"
CREDITS = "credits"
INVOICE_MONTH = "invoice_month"
STRING_COLUMNS = (
    "billing_account_id", "service_id", "service_description", "sku_id", "sku_description", "project_id",
    "project_name", "project_ancestry_numbers", "location_location", "location_country", "location_region",
    "location_zone", "currency", "usage_unit", "usage_pricing_unit", INVOICE_MONTH, "cost_type",
    "resource_name", "resource_global_name", CREDITS,
)  # fmt: skip
TIMESTAMP_COLUMNS = (USAGE_START, "usage_end_time", "export_time")
AMOUNT_COLUMNS = (COST, "currency_conversion_rate", "usage_amount", "usage_amount_in_pricing_units")
LABEL_COLUMNS = ("labels", "system_labels", "project_labels")
LINE_ITEM_SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in STRING_COLUMNS]
    + [pa.field(c, TIMESTAMP_TYPE) for c in TIMESTAMP_COLUMNS]
    + [pa.field("partition_date", pa.date32())]
    + [pa.field(c, pa.float64()) for c in (*AMOUNT_COLUMNS, CREDIT_AMOUNT)]
    + [pa.field(c, pa.string()) for c in LABEL_COLUMNS]
)


def _literal(text: str) -> Any:
    """JSON, or a Python literal (nise writes ``project.labels`` as ``[{'key': ...}]``); None if neither."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def labels_json(text: str) -> str | None:
    """``[{"key": k, "value": v}, ...]`` (or an object) as compact JSON object text; None if malformed."""
    body = text.strip()
    if body in ("", "[]", "{}", "null"):
        return "{}"
    doc = _literal(body)
    if isinstance(doc, list) and all(isinstance(i, dict) and "key" in i for i in doc):
        doc = {str(i["key"]): i.get("value") for i in doc}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if isinstance(doc, dict) else None


def credits_total(text: str) -> str | None:
    """The exact sum of the ``amount``s of a credits JSON array, as plain decimal text; None if malformed."""
    body = text.strip()
    if body in ("", "[]", "null"):
        return "0"
    try:
        doc = json.loads(body, parse_float=Decimal, parse_int=Decimal)
        total = sum((Decimal(c.get("amount") or 0) for c in doc), start=Decimal(0))
    except (ValueError, TypeError, AttributeError, ArithmeticError):
        return None
    return format(total, "f") if total.is_finite() else None


class GcpTable(CsvTable):
    """A GCP billing export CSV (BigQuery column paths such as ``service.id``) -> :data:`LINE_ITEM_SCHEMA`.

    Keeps the rows of the invoice month; the others count as ``rows_outside_month``.
    """

    SCHEMA = LINE_ITEM_SCHEMA
    REQUIRED = (USAGE_START, COST, INVOICE_MONTH)
    RAW_SUMS = (COST, CREDIT_AMOUNT)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        out: dict[str, pa.Array] = {c: self.text(batch, c) for c in STRING_COLUMNS}
        out |= {c: self.timestamps(batch, c) for c in TIMESTAMP_COLUMNS}
        out["partition_date"] = pc.cast(self.timestamps(batch, "partition_date"), pa.date32())
        raw: dict[str, pa.Array] = {}
        for c in AMOUNT_COLUMNS:
            raw[c], out[c] = self.amount(batch, c)
        credit_text = self.map_distinct(out[CREDITS], credits_total)
        raw[CREDIT_AMOUNT], out[CREDIT_AMOUNT] = credit_text, pc.cast(credit_text, pa.float64())
        for c in LABEL_COLUMNS:
            out[c] = pc.fill_null(self.map_distinct(self.text(batch, c), labels_json), "{}")
        start = out[USAGE_START]
        keep = pc.and_(pc.equal(out[INVOICE_MONTH], f"{self.month:%Y%m}"), pc.is_valid(start))
        return self.finish(out, start, keep, raw)


@dataclass(frozen=True)
class MonthTotals(CostTotals):
    """Row counts, cost and credit sums of every step of one GCP invoice month, for asset checks."""

    source_rows: int
    line_item_rows: int
    daily_rows: int
    summary_rows: int
    #: Source rows of other invoice months (normal: files overlap months), not converted.
    rows_other_invoice_month: int
    #: Summary rows whose ``invoice_month`` is not this month (must be 0).
    summary_rows_other_invoice_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_cost: Decimal
    raw_credits: Decimal
    daily_cost: Decimal
    daily_credits: Decimal
    summary_cost: Decimal
    summary_credits: Decimal

    @property
    def costs_match(self) -> bool:
        """Daily and summary cost and credits equal the raw export's to the cent."""
        return match_to_cent(
            (self.daily_cost, self.raw_cost),
            (self.summary_cost, self.raw_cost),
            (self.daily_credits, self.raw_credits),
            (self.summary_credits, self.raw_credits),
        )

    @property
    def summary_rows_outside_month(self) -> int:
        """Summary rows outside this invoice month (the GCP counterpart of the other types' field)."""
        return self.summary_rows_other_invoice_month


def convert_manifest(
    source: ReportFiles, manifest: Manifest, *, schema: str, provider_uuid: str, out_root: Path, max_workers: int = 2
) -> LineItemsResult[FileStats]:
    """Convert the invoice month's rows of every file of ``manifest`` into its line-item partition (replaced)."""
    partition = line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, manifest.billing_period_start)
    return convert_files(source, manifest, partition, GcpTable, max_workers)


def build_daily(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Aggregate the invoice month's line items per usage day (and service, sku, project, labels, ...)."""
    inputs = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"line_item_files": [str(p) for p in inputs]} | month_bounds(month)
    partition = daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)
    return build_table(DAILY_SQL, params, inputs, partition, month, work_dir)


def build_summary(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Compute ``reporting_gcpcostentrylineitem_daily_summary`` for the invoice month from the daily line items."""
    inputs = parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"daily_files": [str(p) for p in inputs], "source_uuid": provider_uuid} | month_bounds(month)
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    return build_table(SUMMARY_TABLE, params, inputs, partition, month, work_dir)


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts, cost and credit sums of the line-item, daily and summary partitions of one invoice month.

    Raw cost and credits are the exact sums of the export's text taken while converting (footers).
    """
    items = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    rows, stats = export_footer_stats(items)
    daily_files = parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    daily_rows, (daily_cost, daily_credits) = column_sums(daily_files, [COST, CREDIT_AMOUNT])
    summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
    summary_rows, (summary_cost, summary_credits) = column_sums(summary_files, ["unblended_cost", CREDIT_AMOUNT])
    return MonthTotals(
        source_rows=stats.source_rows,
        line_item_rows=rows,
        daily_rows=daily_rows,
        summary_rows=summary_rows,
        rows_other_invoice_month=stats.rows_outside_month,
        summary_rows_other_invoice_month=rows_not_equal(summary_files, INVOICE_MONTH, f"{month:%Y%m}"),
        rows_without_usage_start=stats.rows_without_usage_start,
        uncast_cells=stats.uncast_cells,
        raw_cost=stats.raw(COST),
        raw_credits=stats.raw(CREDIT_AMOUNT),
        daily_cost=daily_cost,
        daily_credits=daily_credits,
        summary_cost=summary_cost,
        summary_credits=summary_credits,
    )
