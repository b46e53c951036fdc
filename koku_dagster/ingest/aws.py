"""AWS cost ingestion, one step per function, for one provider and billing month.

Steps (each a Dagster asset elsewhere): ``source.find_manifest(month)`` ->
:func:`convert_manifest` (CUR CSV -> line-item Parquet) -> :func:`build_daily` (daily line items) ->
:func:`build_summary` (``reporting_awscostentrylineitem_daily_summary``) -> :func:`month_totals`
(figures for asset checks). Every step replaces its whole month partition, so re-runs leave no
duplicates. No Dagster imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from koku_dagster.ingest.aws_convert import ConversionStats, convert_file
from koku_dagster.ingest.aws_source import Manifest, ReportFiles
from koku_dagster.ingest.csv_parquet import convert_manifest_files, footer_stats
from koku_dagster.ingest.month_tables import build_table, column_sums, rows_outside_month
from koku_dagster.ingest.paths import daily_dir, line_items_dir, parquet_files, summary_dir
from koku_dagster.ingest.results import CostTotals, LineItemsResult, TableResult, match_to_cent

PROVIDER_TYPE = "AWS"
DAILY_SQL = "aws_line_items_daily"
SUMMARY_TABLE = "reporting_awscostentrylineitem_daily_summary"


@dataclass(frozen=True)
class MonthTotals(CostTotals):
    """Row counts and cost sums of every step of one provider month, for asset checks."""

    source_rows: int
    line_item_rows: int
    daily_rows: int
    summary_rows: int
    rows_outside_month: int
    #: Summary rows whose ``usage_start`` is not in the billing month (must be 0).
    summary_rows_outside_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_unblended_cost: Decimal
    raw_blended_cost: Decimal
    daily_unblended_cost: Decimal
    summary_unblended_cost: Decimal
    summary_blended_cost: Decimal

    @property
    def costs_match(self) -> bool:
        """Summary and daily unblended, and summary blended cost, equal the raw report's to the cent."""
        return match_to_cent(
            (self.summary_unblended_cost, self.raw_unblended_cost),
            (self.daily_unblended_cost, self.raw_unblended_cost),
            (self.summary_blended_cost, self.raw_blended_cost),
        )


def convert_manifest(
    source: ReportFiles,
    manifest: Manifest,
    *,
    schema: str,
    provider_uuid: str,
    out_root: Path,
    max_workers: int = 2,
) -> LineItemsResult[ConversionStats]:
    """Convert every CUR file of ``manifest`` into the month's line-item partition, replacing what was there."""
    partition = line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, manifest.billing_period_start)
    return convert_manifest_files(
        source, manifest, partition, convert_file, ConversionStats.total, max_workers=max_workers
    )


def build_daily(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Aggregate the month's line items per day (and resource, tags, ...) into the daily partition."""
    inputs = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    partition = daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)
    return build_table(DAILY_SQL, {"line_item_files": [str(p) for p in inputs]}, inputs, partition, month, work_dir)


def build_summary(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Compute ``reporting_awscostentrylineitem_daily_summary`` for the month from the daily line items."""
    inputs = parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"daily_files": [str(p) for p in inputs], "source_uuid": provider_uuid}
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    return build_table(SUMMARY_TABLE, params, inputs, partition, month, work_dir)


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts and cost sums of the line-item, daily and summary partitions of one provider month.

    The raw costs are the exact sums of the report's text taken while converting (kept in each
    line-item file's footer); the others are summed from the written Parquet.
    """
    items = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    rows, stats = footer_stats(items, ConversionStats.from_json, ConversionStats.total)
    daily_rows, (daily_unblended,) = column_sums(
        parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)), ["lineitem_unblendedcost"]
    )
    summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
    summary_rows, (summary_unblended, summary_blended) = column_sums(summary_files, ["unblended_cost", "blended_cost"])
    return MonthTotals(
        source_rows=stats.source_rows,
        line_item_rows=rows,
        daily_rows=daily_rows,
        summary_rows=summary_rows,
        rows_outside_month=stats.rows_outside_month,
        summary_rows_outside_month=rows_outside_month(summary_files, "usage_start", month),
        rows_without_usage_start=stats.rows_without_usage_start,
        uncast_cells=stats.uncast_cells,
        raw_unblended_cost=stats.raw_unblended_cost,
        raw_blended_cost=stats.raw_blended_cost,
        daily_unblended_cost=daily_unblended,
        summary_unblended_cost=summary_unblended,
        summary_blended_cost=summary_blended,
    )
