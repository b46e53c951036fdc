"""Write one provider month's line items as FOCUS 1.2 rows (Parquet, via DuckDB), replacing the month's files.

The mapping per provider type is one SQL file in ``sql/`` (``aws.sql``, ``azure.sql``, ``gcp.sql``); this
module casts its result to the columns of :mod:`koku_dagster.focus.columns` and adds the ``x_`` columns
every provider type shares. No Dagster imports here; see ``docs/focus.md``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from koku_dagster.focus.columns import COLUMNS, CUSTOM_PREFIX, KOKU_PROVIDER_TYPE, SOURCE_UUID
from koku_dagster.reports.duck import connect, copy_to_parquet, literal_files
from koku_dagster.reports.months import month_bounds
from koku_dagster.reports.paths import parquet_files, replacing

SQL_DIR = Path(__file__).parent / "sql"
#: A FOCUS month is as many rows as its line items and most of the build is Parquet encoding: one file per
#: thread keeps every core encoding, zstd level 1 costs less CPU for a slightly larger file, and text with
#: more than 1,000 distinct values (descriptions, resource ids, JSON) is not worth a dictionary (make bench).
WRITE_OPTIONS = "PER_THREAD_OUTPUT true, FILENAME_PATTERN 'focus_{i}', COMPRESSION_LEVEL 1, DICTIONARY_SIZE_LIMIT 1000"
#: Columns the SQL files do not produce: the billing period is the partition's month.
_PERIOD_PARAMS = {"BillingPeriodStart": "month_start", "BillingPeriodEnd": "month_end"}


@dataclass(frozen=True)
class FocusType:
    """How one provider type's line items become FOCUS rows and what its billed total is."""

    sql: str
    #: SQL over the line items: the report's billed cost of a row, and its currency.
    billed_cost: str
    currency: str


TYPES: dict[str, FocusType] = {
    "AWS": FocusType("aws", "lineitem_unblendedcost", "lineitem_currencycode"),
    "Azure": FocusType("azure", "costinbillingcurrency", "billingcurrency"),
    "GCP": FocusType("gcp", "coalesce(cost, 0) + coalesce(credit_amount, 0)", "currency"),
}


@dataclass(frozen=True)
class FocusResult:
    """The FOCUS partition of one provider month as written."""

    partition: Path
    files: tuple[Path, ...]
    rows: int
    bytes: int
    #: sum(BilledCost) per BillingCurrency, exact sums of the written values.
    billed_cost: dict[str, Decimal]

    def metadata(self) -> dict[str, Any]:
        """Flat, JSON-friendly figures (Dagster metadata)."""
        costs = {f"billed_cost_{cur}": str(total) for cur, total in sorted(self.billed_cost.items())}
        figures = {"partition": str(self.partition), "files": len(self.files), "rows": self.rows, "bytes": self.bytes}
        return figures | costs


def base_type(provider_type: str) -> str:
    """``AWS-local`` -> ``AWS``; refuses types without a FOCUS mapping (OpenShift has no costs yet)."""
    base = provider_type.removesuffix("-local")
    if base not in TYPES:
        raise ValueError(f"no FOCUS mapping for provider type {provider_type!r}")
    return base


def focus_dir(out_root: Path, provider_uuid: str, month: date) -> Path:
    """``data/focus/source={uuid}/year=YYYY/month=MM`` below ``out_root``."""
    if str(uuid.UUID(provider_uuid)) != provider_uuid:
        raise ValueError(f"provider uuid must be lowercase hyphenated: {provider_uuid!r}")
    return out_root / "data/focus" / f"source={provider_uuid}" / f"year={month.year:04d}" / f"month={month.month:02d}"


def parquet_inputs(line_items: Path | Sequence[Path]) -> list[Path]:
    """The Parquet files of a directory (sorted), or the given list."""
    return parquet_files(line_items) if isinstance(line_items, Path) else list(line_items)


def focus_query(provider_type: str) -> str:
    """The full SELECT for a provider type: its mapping SQL cast to the FOCUS columns, then the ``x_`` columns."""
    mapping = (SQL_DIR / f"{TYPES[base_type(provider_type)].sql}.sql").read_text(encoding="utf-8")
    exprs = [
        f'CAST(${_PERIOD_PARAMS[c.name]} AS {c.kind.value}) AS "{c.name}"'
        if c.name in _PERIOD_PARAMS
        else f'CAST(m."{c.name}" AS {c.kind.value}) AS "{c.name}"'
        for c in COLUMNS
    ]
    exprs += [f'CAST($provider_uuid AS VARCHAR) AS "{SOURCE_UUID}"']
    exprs += [f'CAST($provider_type AS VARCHAR) AS "{KOKU_PROVIDER_TYPE}"']
    exprs += [f"COLUMNS('^{CUSTOM_PREFIX}')"]
    return "SELECT\n    " + ",\n    ".join(exprs) + f"\nFROM (\n{mapping}\n) AS m"


def billed_totals(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Decimal]:
    """sum(BilledCost) per BillingCurrency of FOCUS files (exact DECIMAL sums of the stored values)."""
    return _sums_by_currency(files, '"BilledCost"', '"BillingCurrency"', con)


def line_item_billed_totals(line_items: Path | Sequence[Path], provider_type: str) -> dict[str, Decimal]:
    """The report's billed cost per currency summed over a month's line items (what the FOCUS rows must sum to)."""
    spec = TYPES[base_type(provider_type)]
    return _sums_by_currency(parquet_inputs(line_items), spec.billed_cost, f"nullif({spec.currency}, '')")


def _sums_by_currency(
    files: Sequence[Path], amount: str, currency: str, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Decimal]:
    if not files:
        return {}
    query = (
        f"SELECT coalesce({currency}, ''), sum(CAST({amount} AS DECIMAL(38, 12))) "
        "FROM read_parquet($files, union_by_name = true, hive_partitioning = false) GROUP BY ALL"
    )
    params = {"files": literal_files(files)}
    if con is None:
        with connect() as own:
            rows = own.execute(query, params).fetchall()
    else:
        rows = con.execute(query, params).fetchall()
    return {str(cur): Decimal(total or 0) for cur, total in rows}


def build_focus(
    line_items: Path | Sequence[Path],
    *,
    provider_type: str,
    provider_uuid: str,
    month: date,
    out_dir: Path,
    work_dir: Path | None = None,
) -> FocusResult:
    """Write the FOCUS 1.2 rows of one provider month's line items into ``out_dir``, replacing what was there.

    ``line_items`` is the month's line-item partition directory (or its Parquet files), ``provider_type`` the
    provider's type as in ``api_provider.type`` (``AWS``, ``Azure-local``, ...; kept in ``x_KokuProviderType``),
    ``month`` the billing (GCP: invoice) month and ``out_dir`` its FOCUS partition (see :func:`focus_dir`).
    Without line items the partition is left empty. On error the previous partition stays as it was.
    """
    query = focus_query(provider_type)
    inputs = parquet_inputs(line_items)
    params = {"files": literal_files(inputs), "provider_uuid": provider_uuid, "provider_type": provider_type}
    with replacing(out_dir) as staging:
        if not inputs:
            return FocusResult(out_dir, (), 0, 0, {})
        with connect(work_dir) as con:
            written = copy_to_parquet(con, query, params | month_bounds(month), staging, WRITE_OPTIONS)
            totals = billed_totals(written.files, con)
    files = tuple(out_dir / f.name for f in written.files)
    return FocusResult(out_dir, files, written.rows, written.bytes, totals)
