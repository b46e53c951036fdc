"""AWS cost ingestion, one step per function, for one provider and billing month.

Steps (each a Dagster asset elsewhere): ``source.find_manifest(month)`` ->
:func:`convert_manifest` (CUR CSV -> line-item Parquet) -> :func:`build_daily` (daily line items) ->
:func:`build_summary` (``reporting_awscostentrylineitem_daily_summary``) -> :func:`month_totals`
(figures for asset checks). Every step replaces its whole month partition, so re-runs leave no
duplicates. No Dagster imports here.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from koku_dagster.ingest import duck
from koku_dagster.ingest.aws_convert import STATS_METADATA_KEY, ConversionStats, convert_file
from koku_dagster.ingest.aws_source import Manifest, ReportFile, ReportFiles
from koku_dagster.ingest.paths import daily_dir, line_items_dir, parquet_files, replacing, summary_dir

PROVIDER_TYPE = "AWS"
DAILY_SQL = "aws_line_items_daily"
SUMMARY_TABLE = "reporting_awscostentrylineitem_daily_summary"
CENT = Decimal("0.01")
ROWS_PER_PASS = 750_000  # input rows aggregated per DuckDB pass: stays well inside duck.connect's 1 GB


class FileFigures(Protocol):
    """Per-file conversion figures (``ConversionStats`` for AWS, ``FileStats`` for Azure and GCP)."""

    def as_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=FileFigures)


@dataclass(frozen=True)
class ConvertedFile(Generic[S]):
    """One report file converted to one line-item Parquet file."""

    key: str
    path: Path
    bytes: int
    stats: S


@dataclass(frozen=True)
class LineItemsResult(Generic[S]):
    """The month's line-item partition as written from one manifest, with the files' summed figures."""

    assembly_id: str
    partition: Path
    files: tuple[ConvertedFile[S], ...]
    stats: S

    def metadata(self) -> dict[str, Any]:
        """Flat, JSON-friendly figures (Dagster metadata)."""
        return {
            "assembly_id": self.assembly_id,
            "partition": str(self.partition),
            "files": len(self.files),
            "bytes": sum(f.bytes for f in self.files),
            **self.stats.as_dict(),
        }


@dataclass(frozen=True)
class TableResult:
    """A derived month partition (daily line items or a summary table)."""

    partition: Path
    files: tuple[Path, ...]
    rows: int
    bytes: int

    def metadata(self) -> dict[str, Any]:
        return {"partition": str(self.partition), "files": len(self.files), "rows": self.rows, "bytes": self.bytes}


@dataclass(frozen=True)
class MonthTotals:
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
        return all(
            abs(got - want) < CENT / 2
            for got, want in (
                (self.summary_unblended_cost, self.raw_unblended_cost),
                (self.daily_unblended_cost, self.raw_unblended_cost),
                (self.summary_blended_cost, self.raw_blended_cost),
            )
        )

    def metadata(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        plain = {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()}
        return plain | {"costs_match": self.costs_match}


def convert_manifest(
    source: ReportFiles,
    manifest: Manifest,
    *,
    schema: str,
    provider_uuid: str,
    out_root: Path,
    max_workers: int = 2,
) -> LineItemsResult[ConversionStats]:
    """Convert every file of ``manifest`` into the month's line-item partition, replacing what was there.

    Files are converted concurrently (threads: Arrow releases the GIL while parsing and writing). Any
    file's error (:class:`~koku_dagster.ingest.errors.IngestError`) aborts the step and leaves the
    previous partition untouched.
    """
    month = manifest.billing_period_start
    partition = line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)
    with replacing(partition) as staging, ThreadPoolExecutor(max_workers=max_workers) as pool:

        def convert(file: ReportFile) -> ConvertedFile:
            target = staging / f"{file.name.removesuffix('.gz').removesuffix('.csv')}.parquet"
            stats = convert_file(lambda: source.open_file(file.key), file.name, month, target)
            return ConvertedFile(file.key, partition / target.name, target.stat().st_size, stats)

        converted = tuple(pool.map(convert, manifest.files))
    pa.default_memory_pool().release_unused()  # hand Arrow's cached buffers back before the next step
    return LineItemsResult(
        manifest.assembly_id, partition, converted, ConversionStats.total(f.stats for f in converted)
    )


def _day_ranges(month: date, passes: int) -> list[tuple[datetime, datetime]]:
    """``passes`` consecutive [start, end) ranges of whole days covering the month (UTC)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    days = (datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC) - start).days
    passes = min(passes, days)
    cuts = [start + timedelta(days=round(days * i / passes)) for i in range(passes + 1)]
    return list(itertools.pairwise(cuts))


def _build(
    sql: str, params: dict[str, Any], inputs: list[Path], partition: Path, month: date, work_dir: Path
) -> TableResult:
    """Write ``sql`` over ``inputs`` into ``partition`` (replaced whole), one file per range of days.

    Groups never span days, so the month is aggregated in as many day ranges as needed to keep each
    pass near ``ROWS_PER_PASS`` input rows: DuckDB then aggregates in memory instead of spilling.
    """
    rows = sum(pq.read_metadata(p).num_rows for p in inputs)
    with replacing(partition) as staging:
        if not inputs:
            return TableResult(partition, (), 0, 0)
        written = []
        query = duck.load_sql(sql)
        with duck.connect(work_dir) as con:
            for i, (start, end) in enumerate(_day_ranges(month, math.ceil(rows / ROWS_PER_PASS))):
                target = staging / f"part-{i}.parquet"
                written.append(duck.copy_to_parquet(con, query, params | {"start": start, "end": end}, target))
    return TableResult(
        partition,
        tuple(partition / w.path.name for w in written),
        sum(w.rows for w in written),
        sum(w.bytes for w in written),
    )


def build_daily(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Aggregate the month's line items per day (and resource, tags, ...) into the daily partition."""
    inputs = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    partition = daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)
    return _build(DAILY_SQL, {"line_item_files": [str(p) for p in inputs]}, inputs, partition, month, work_dir)


def build_summary(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Compute ``reporting_awscostentrylineitem_daily_summary`` for the month from the daily line items."""
    inputs = parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"daily_files": [str(p) for p in inputs], "source_uuid": provider_uuid}
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    return _build(SUMMARY_TABLE, params, inputs, partition, month, work_dir)


def _sums(files: list[Path], columns: list[str]) -> tuple[int, list[Decimal]]:
    """Row count and exact (DECIMAL) sums of DOUBLE columns over Parquet files."""
    if not files:
        return 0, [Decimal(0)] * len(columns)
    with duck.connect() as con:
        exprs = ", ".join(f'coalesce(sum(CAST("{c}" AS DECIMAL(38, 12))), 0)' for c in columns)
        query = f"SELECT count(*), {exprs} FROM read_parquet($files)"
        row = con.execute(query, {"files": [str(f) for f in files]}).fetchone() or (0, *[0] * len(columns))
    return int(row[0]), [Decimal(v) for v in row[1:]]


def _rows_outside(files: list[Path], column: str, month: date) -> int:
    """Rows of Parquet files whose date ``column`` falls outside the billing month."""
    if not files:
        return 0
    next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    with duck.connect() as con:
        query = f'SELECT count(*) FROM read_parquet($files) WHERE NOT (CAST("{column}" AS DATE) >= $start AND CAST("{column}" AS DATE) < $end)'
        row = con.execute(query, {"files": [str(f) for f in files], "start": month, "end": next_month}).fetchone()
    return int(row[0]) if row else 0


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts and cost sums of the line-item, daily and summary partitions of one provider month.

    The raw costs are the exact sums of the report's text taken while converting (kept in each
    line-item file's footer); the others are summed from the written Parquet.
    """
    items = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    footers = [pq.read_metadata(p) for p in items]
    stats = ConversionStats.total(ConversionStats.from_json(f.metadata[STATS_METADATA_KEY]) for f in footers)
    daily_rows, (daily_unblended,) = _sums(
        parquet_files(daily_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)), ["lineitem_unblendedcost"]
    )
    summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
    summary_rows, (summary_unblended, summary_blended) = _sums(summary_files, ["unblended_cost", "blended_cost"])
    return MonthTotals(
        source_rows=stats.source_rows,
        line_item_rows=sum(f.num_rows for f in footers),
        daily_rows=daily_rows,
        summary_rows=summary_rows,
        rows_outside_month=stats.rows_outside_month,
        summary_rows_outside_month=_rows_outside(summary_files, "usage_start", month),
        rows_without_usage_start=stats.rows_without_usage_start,
        uncast_cells=stats.uncast_cells,
        raw_unblended_cost=stats.raw_unblended_cost,
        raw_blended_cost=stats.raw_blended_cost,
        daily_unblended_cost=daily_unblended,
        summary_unblended_cost=summary_unblended,
        summary_blended_cost=summary_blended,
    )
