"""Derived month partitions (daily line items, summaries) written with DuckDB, and figures of Parquet files."""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from koku_dagster.reports import duck
from koku_dagster.reports.months import month_range
from koku_dagster.reports.paths import parquet_files, replacing
from koku_dagster.reports.results import TableResult

ROWS_PER_PASS = 750_000  # input rows aggregated per DuckDB pass: stays well inside duck.connect's 1 GB


def day_ranges(month: date, passes: int) -> list[tuple[datetime, datetime]]:
    """``passes`` consecutive [start, end) ranges of whole days covering the month (UTC)."""
    start, end = month_range(month)
    days = (end - start).days
    passes = min(passes, days)
    cuts = [start + timedelta(days=round(days * i / passes)) for i in range(passes + 1)]
    return list(itertools.pairwise(cuts))


def build_table(
    query: str, params: dict[str, Any], inputs: list[Path], partition: Path, month: date, work_dir: Path
) -> TableResult:
    """Write ``query`` over ``inputs`` into ``partition`` (replaced whole), one file per range of days.

    Groups never span days, so the month is aggregated in as many day ranges as needed to keep each
    pass near ``ROWS_PER_PASS`` input rows: DuckDB then aggregates in memory instead of spilling.
    """
    rows = sum(pq.read_metadata(p).num_rows for p in inputs)
    with replacing(partition) as staging:
        if not inputs:
            return TableResult(partition, (), 0, 0)
        written = []
        with duck.connect(work_dir) as con:
            for i, (start, end) in enumerate(day_ranges(month, math.ceil(rows / ROWS_PER_PASS))):
                target = staging / f"part-{i}.parquet"
                written.append(duck.copy_to_parquet(con, query, params | {"start": start, "end": end}, target))
    return TableResult(
        partition,
        tuple(partition / w.path.name for w in written),
        sum(w.rows for w in written),
        sum(w.bytes for w in written),
    )


def build_from(
    query: str,
    input_dir: Path,
    files_param: str,
    params: dict[str, Any],
    partition: Path,
    month: date,
    work_dir: Path,
) -> TableResult:
    """:func:`build_table` over the Parquet files of ``input_dir``, passed to ``query`` as ``$files_param``."""
    inputs = parquet_files(input_dir)
    return build_table(query, {files_param: duck.literal_files(inputs)} | params, inputs, partition, month, work_dir)


def column_sums(files: list[Path], columns: list[str]) -> tuple[int, list[Decimal]]:
    """Row count and exact (DECIMAL) sums of DOUBLE columns over Parquet files."""
    if not files:
        return 0, [Decimal(0)] * len(columns)
    with duck.connect() as con:
        exprs = ", ".join(f'coalesce(sum(CAST("{c}" AS DECIMAL(38, 12))), 0)' for c in columns)
        query = f"SELECT count(*), {exprs} FROM read_parquet($files)"
        row = con.execute(query, {"files": duck.literal_files(files)}).fetchone() or (0, *[0] * len(columns))
    return int(row[0]), [Decimal(v) for v in row[1:]]


def _count_where(files: list[Path], condition: str, params: dict[str, Any]) -> int:
    """Rows of Parquet files that meet the SQL ``condition`` (named ``$params``)."""
    if not files:
        return 0
    with duck.connect() as con:
        query = f"SELECT count(*) FROM read_parquet($files) WHERE {condition}"
        row = con.execute(query, {"files": duck.literal_files(files)} | params).fetchone()
    return int(row[0]) if row else 0


def rows_outside_month(files: list[Path], column: str, month: date) -> int:
    """Rows of Parquet files whose date ``column`` falls outside the billing month."""
    start, end = month_range(month)
    day = f'CAST("{column}" AS DATE)'
    return _count_where(files, f"NOT ({day} >= $start AND {day} < $end)", {"start": start.date(), "end": end.date()})


def rows_not_equal(files: list[Path], column: str, value: str) -> int:
    """Rows of Parquet files whose ``column`` is not ``value`` (null included)."""
    return _count_where(files, f'"{column}" IS DISTINCT FROM $value', {"value": value})
