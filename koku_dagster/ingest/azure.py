"""Azure cost ingestion, one step per function, for one provider and billing month.

Steps: ``source.find_manifest(month)`` -> :func:`convert_manifest` (export CSV -> line-item Parquet) ->
:func:`build_summary` (``reporting_azurecostentrylineitem_daily_summary``) -> :func:`month_totals`.
Azure has no separate daily table (Koku reads the line items as its daily table). Every step
replaces its whole month partition. No Dagster imports here.

The first half of this module is the provider-neutral CSV conversion (:class:`CsvTable`,
:func:`convert_csv`, :func:`convert_files`, :class:`FileStats`) that :mod:`~koku_dagster.ingest.gcp`
reuses: columns are addressed by position, normalised as Koku does (``re.sub(r"\\W+", "_", name).lower()``),
read as text in record batches, typed with lenient, counted casts, and the exact DECIMAL sums of the
raw cost text are kept in each Parquet footer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koku_dagster.ingest.aws import CENT, ConvertedFile, LineItemsResult, TableResult, _build, _rows_outside, _sums
from koku_dagster.ingest.aws_columns import TIMESTAMP_TYPE
from koku_dagster.ingest.aws_convert import (
    STATS_METADATA_KEY,
    _batches,
    _exact_sum,
    _Normaliser,
    _position,
    read_header,
)
from koku_dagster.ingest.aws_source import Manifest, ReportFile, ReportFiles
from koku_dagster.ingest.errors import ReportFormatError
from koku_dagster.ingest.paths import line_items_dir, parquet_files, replacing, summary_dir

PROVIDER_TYPE = "Azure"
SUMMARY_TABLE = "reporting_azurecostentrylineitem_daily_summary"
_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- provider-neutral CSV conversion


def normalise_name(header: str) -> str:
    """Koku's column name normalisation: ``service.id`` -> ``service_id``, ``UsageDateTime`` -> ``usagedatetime``."""
    return re.sub(r"\W+", "_", header.strip().lstrip("\ufeff")).lower()


@dataclass(frozen=True)
class FileStats:
    """What a conversion read, wrote and dropped, with exact sums of the kept rows' raw amount text."""

    source_rows: int = 0
    rows: int = 0
    rows_outside_month: int = 0
    rows_without_usage_start: int = 0
    uncast_cells: int = 0
    raw_sums: dict[str, Decimal] = field(default_factory=dict)

    def __add__(self, other: FileStats) -> FileStats:
        counts = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "raw_sums"}
        sums = {k: self.raw(k) + other.raw(k) for k in self.raw_sums.keys() | other.raw_sums.keys()}
        return FileStats(**counts, raw_sums=sums)

    def raw(self, column: str) -> Decimal:
        """The exact sum of a raw amount column (0 if it was not summed)."""
        return self.raw_sums.get(column, Decimal(0))

    @classmethod
    def total(cls, parts: Iterable[FileStats]) -> FileStats:
        return sum(parts, start=cls())

    def as_dict(self) -> dict[str, int | str]:
        """JSON-friendly and flat: sums as text under ``raw_{column}``."""
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw_sums"}
        return counts | {f"raw_{k}": str(v) for k, v in sorted(self.raw_sums.items())}

    @classmethod
    def from_json(cls, text: str | bytes) -> FileStats:
        doc = json.loads(text)
        sums = {k.removeprefix("raw_"): Decimal(v) for k, v in doc.items() if k.startswith("raw_")}
        return cls(**{k: int(v) for k, v in doc.items() if not k.startswith("raw_")}, raw_sums=sums)


def distinct_map(text: pa.Array, fn: Callable[[str], str | None]) -> tuple[pa.Array, int]:
    """``fn`` applied once per distinct value of a text column; (results, rows where it gave None)."""
    encoded = pc.dictionary_encode(text)
    mapped = [fn(v) for v in encoded.dictionary.to_pylist()]
    values = pc.take(pa.array(mapped, pa.string()), encoded.indices)
    return values, values.null_count - text.null_count


class CsvTable:
    """Turns the record batches of one CSV file (one header) into tables of a fixed schema.

    Subclasses set ``SCHEMA``, ``REQUIRED`` (normalised names every file must have) and ``RAW_SUMS``
    (amount columns whose raw text is summed exactly), and implement :meth:`convert` with the helpers.
    When two headers normalise to the same name, the first one wins.
    """

    SCHEMA: ClassVar[pa.Schema]
    REQUIRED: ClassVar[tuple[str, ...]]
    RAW_SUMS: ClassVar[tuple[str, ...]]
    _amounts = _Normaliser._amounts  # lenient, counted numeric cast (needs only ``self.uncast``)

    def __init__(self, headers: list[str], name: str, month: date) -> None:
        self.columns: dict[str, str] = {}
        for i, header in enumerate(headers):
            self.columns.setdefault(self.column_name(header), _position(i))
        missing = [c for c in self.REQUIRED if c not in self.columns]
        if missing:
            raise ReportFormatError(f"{name}: required column(s) missing: {', '.join(missing)}")
        self.month = month
        self.rows = self.outside = self.no_start = self.uncast = 0
        self.raw = {c: Decimal(0) for c in self.RAW_SUMS}

    @staticmethod
    def column_name(header: str) -> str:
        return normalise_name(header)

    def needed(self) -> list[str]:
        """The positional names of the CSV columns to read."""
        return [pos for name, pos in self.columns.items() if name in self.SCHEMA.names]

    def text(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        """A column as text; empty when the file lacks it."""
        pos = self.columns.get(name)
        return batch.column(pos) if pos else pa.repeat("", batch.num_rows)

    def amount(self, batch: pa.RecordBatch, name: str) -> tuple[pa.Array, pa.Array]:
        """(numeric text, float64) of a column; non-numeric cells null and counted, absent columns 0."""
        if name not in self.columns:
            return pa.nulls(batch.num_rows, pa.string()), pa.repeat(pa.scalar(0.0), batch.num_rows)
        return self._amounts(self.text(batch, name))

    def timestamps(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        """ISO 8601 or US (``MM/DD/YYYY``) dates/times as UTC timestamps; unparseable cells null and counted."""
        if name not in self.columns:
            return pa.nulls(batch.num_rows, TIMESTAMP_TYPE)
        text = self.text(batch, name)
        present = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            return pc.cast(present, TIMESTAMP_TYPE)
        except pa.ArrowInvalid:
            pass
        encoded = pc.dictionary_encode(present)
        parsed = pa.array([_parse_time(v) for v in encoded.dictionary.to_pylist()], TIMESTAMP_TYPE)
        values = pc.take(parsed, encoded.indices)
        self.uncast += values.null_count - present.null_count
        return values

    def finish(self, out: dict[str, pa.Array], start: pa.Array, keep: pa.Array, raw: dict[str, pa.Array]) -> pa.Table:
        """The kept rows as a table; counts kept, outside (not kept) and start-less rows, sums raw text."""
        kept = pc.sum(keep).as_py() or 0
        self.rows += kept
        self.no_start += start.null_count
        self.outside += len(start) - kept - start.null_count
        for name in self.RAW_SUMS:
            self.raw[name] += _exact_sum(pc.filter(raw[name], keep))
        return pa.Table.from_pydict(out, schema=self.SCHEMA).filter(keep)

    def in_month(self, start: pa.Array) -> pa.Array:
        """Whether each timestamp lies in the billing month (null -> False)."""
        first = datetime(self.month.year, self.month.month, 1, tzinfo=UTC)
        following = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
        inside = pc.and_(
            pc.greater_equal(start, pa.scalar(first, TIMESTAMP_TYPE)),
            pc.less(start, pa.scalar(following, TIMESTAMP_TYPE)),
        )
        return pc.fill_null(inside, False)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        raise NotImplementedError

    def stats(self, source_rows: int) -> FileStats:
        return FileStats(source_rows, self.rows, self.outside, self.no_start, self.uncast, dict(self.raw))


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TableFactory = Callable[[list[str], str, date], CsvTable]


def convert_csv(
    open_file: Callable[[], BinaryIO], name: str, month: date, out_path: Path, make_table: TableFactory
) -> FileStats:
    """Convert one CSV(.gz) file to ``out_path`` with the table ``make_table`` builds for its header.

    Raises :class:`ReportFormatError` (missing required columns, wrong extension) and
    :class:`CorruptReportError` (truncated or malformed); no output file is left behind on error.
    """
    headers = read_header(open_file, name)
    table = make_table(headers, name, month)
    source_rows = 0
    try:
        with pq.ParquetWriter(out_path, table.SCHEMA, compression="zstd") as writer:
            for batch in _batches(open_file, name, len(headers), table.needed()):
                source_rows += batch.num_rows
                writer.write_table(table.convert(batch))
            stats = table.stats(source_rows)
            writer.add_key_value_metadata({STATS_METADATA_KEY: json.dumps(stats.as_dict())})
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return stats


def convert_files(
    source: ReportFiles, manifest: Manifest, partition: Path, make_table: TableFactory, max_workers: int = 2
) -> LineItemsResult[FileStats]:
    """Convert every file of ``manifest`` into ``partition``, replaced whole; any error leaves it untouched."""
    month = manifest.billing_period_start
    with replacing(partition) as staging, ThreadPoolExecutor(max_workers=max_workers) as pool:

        def convert(file: ReportFile) -> ConvertedFile:
            stem = re.sub(r"[^\w.-]", "_", file.name.removesuffix(".gz").removesuffix(".csv"))
            target = staging / f"{stem}.parquet"
            stats = convert_csv(lambda: source.open_file(file.key), file.name, month, target, make_table)
            return ConvertedFile(file.key, partition / target.name, target.stat().st_size, stats)

        converted = tuple(pool.map(convert, manifest.files))
    pa.default_memory_pool().release_unused()
    return LineItemsResult(manifest.assembly_id, partition, converted, FileStats.total(f.stats for f in converted))


def footer_stats(files: list[Path]) -> tuple[int, FileStats]:
    """(rows written, conversion stats) from the footers of line-item files."""
    footers = [pq.read_metadata(p) for p in files]
    stats = FileStats.total(FileStats.from_json(f.metadata[STATS_METADATA_KEY]) for f in footers)
    return sum(f.num_rows for f in footers), stats


def month_bounds(month: date) -> dict[str, datetime]:
    """``month_start`` and ``month_end`` (UTC) for SQL parameters."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return {"month_start": start, "month_end": end}


def matches(got: Decimal, want: Decimal) -> bool:
    """Equal to the cent."""
    return abs(got - want) < CENT / 2


def totals_metadata(totals: Any) -> dict[str, Any]:
    """A month-totals dataclass as flat, JSON-friendly Dagster metadata (decimals as text)."""
    values = {f.name: getattr(totals, f.name) for f in fields(totals)}
    plain = {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()}
    return plain | {"costs_match": totals.costs_match}


# ---------------------------------------------------------------- Azure

#: Names of the older export schema (after normalisation) -> the current ones.
OLD_TO_NEW = {
    "usagedatetime": "date",
    "pretaxcost": "costinbillingcurrency",
    "usagequantity": "quantity",
    "subscriptionguid": "subscriptionid",
    "instanceid": "resourceid",
    "resourcegroup": "resourcegroupname",
    "resourcerate": "effectiveprice",
    "currency": "billingcurrency",
    "billingcurrencycode": "billingcurrency",
    "product": "productname",
}
USAGE_DATE = "date"
PRETAX_COST = "costinbillingcurrency"
TAGS = "tags"
STRING_COLUMNS = (
    "subscriptionid", "subscriptionname", "resourcegroupname", "resourcelocation", "productname",
    "metercategory", "metersubcategory", "meterid", "metername", "meterregion", "unitofmeasure",
    "consumedservice", "resourceid", "resourcename", "servicefamily", "billingcurrency", "billingaccountid",
    "billingprofileid", "invoicesectionname", "chargetype", "pricingmodel", "publishertype", "publishername",
    "reservationid", "reservationname", "offerid", "frequency", "partnumber", "additionalinfo",
    "serviceinfo1", "serviceinfo2", "costcenter", "invoiceid",
)  # fmt: skip
TIMESTAMP_COLUMNS = (USAGE_DATE, "billingperiodstartdate", "billingperiodenddate")
AMOUNT_COLUMNS = ("quantity", "effectiveprice", PRETAX_COST, "unitprice", "paygprice")
LINE_ITEM_SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in STRING_COLUMNS]
    + [pa.field(c, TIMESTAMP_TYPE) for c in TIMESTAMP_COLUMNS]
    + [pa.field(c, pa.float64()) for c in AMOUNT_COLUMNS]
    + [pa.field(TAGS, pa.string())]
)


def tags_json(text: str) -> str | None:
    """Azure tags as compact JSON object text (``{}`` when empty); None when not a JSON object.

    Accepts ``{"k": "v"}`` and the brace-less ``"k": "v","k2": "v2"`` of older exports.
    """
    body = text.strip()
    if body in ("", '""', "{}"):
        return "{}"
    if not body.startswith("{"):
        body = "{" + body + "}"
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if isinstance(doc, dict) else None


class AzureTable(CsvTable):
    """An Azure export (current ``Date`` schema or older ``UsageDateTime`` one) -> :data:`LINE_ITEM_SCHEMA`."""

    SCHEMA = LINE_ITEM_SCHEMA
    REQUIRED = (USAGE_DATE, PRETAX_COST)
    RAW_SUMS = (PRETAX_COST,)

    @staticmethod
    def column_name(header: str) -> str:
        name = normalise_name(header)
        return OLD_TO_NEW.get(name, name)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        out: dict[str, pa.Array] = {c: self.text(batch, c) for c in STRING_COLUMNS}
        out |= {c: self.timestamps(batch, c) for c in TIMESTAMP_COLUMNS}
        raw: dict[str, pa.Array] = {}
        for c in AMOUNT_COLUMNS:
            raw[c], out[c] = self.amount(batch, c)
        out[TAGS], bad = distinct_map(self.text(batch, TAGS), tags_json)
        self.uncast += bad
        out[TAGS] = pc.fill_null(out[TAGS], "{}")
        start = out[USAGE_DATE]
        return self.finish(out, start, self.in_month(start), raw)


@dataclass(frozen=True)
class MonthTotals:
    """Row counts and cost sums of every step of one Azure provider month, for asset checks."""

    source_rows: int
    line_item_rows: int
    summary_rows: int
    rows_outside_month: int
    summary_rows_outside_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_pretax_cost: Decimal
    summary_pretax_cost: Decimal

    @property
    def costs_match(self) -> bool:
        """The summary's pretax cost equals the raw export's to the cent."""
        return matches(self.summary_pretax_cost, self.raw_pretax_cost)

    def metadata(self) -> dict[str, Any]:
        return totals_metadata(self)


def convert_manifest(
    source: ReportFiles, manifest: Manifest, *, schema: str, provider_uuid: str, out_root: Path, max_workers: int = 2
) -> LineItemsResult[FileStats]:
    """Convert every export file of ``manifest`` into the month's line-item partition, replacing what was there."""
    partition = line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, manifest.billing_period_start)
    return convert_files(source, manifest, partition, AzureTable, max_workers)


def build_summary(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Compute ``reporting_azurecostentrylineitem_daily_summary`` for the month from the line items."""
    inputs = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"line_item_files": [str(p) for p in inputs], "source_uuid": provider_uuid}
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    return _build(SUMMARY_TABLE, params, inputs, partition, month, work_dir)


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts and cost sums of the line-item and summary partitions; raw cost from the line-item footers."""
    rows, stats = footer_stats(parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month)))
    summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
    summary_rows, (summary_cost,) = _sums(summary_files, ["pretax_cost"])
    return MonthTotals(
        source_rows=stats.source_rows,
        line_item_rows=rows,
        summary_rows=summary_rows,
        rows_outside_month=stats.rows_outside_month,
        summary_rows_outside_month=_rows_outside(summary_files, "usage_start", month),
        rows_without_usage_start=stats.rows_without_usage_start,
        uncast_cells=stats.uncast_cells,
        raw_pretax_cost=stats.raw(PRETAX_COST),
        summary_pretax_cost=summary_cost,
    )
