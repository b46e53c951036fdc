"""Conversion of cost export CSVs (Azure, GCP) to line-item Parquet of a fixed schema.

Columns are named as Koku does (``re.sub(r"\\W+", "_", name).lower()``) and typed by a :class:`CsvTable`
subclass per provider type; per-file figures are :class:`FileStats`, with exact DECIMAL sums of the
raw cost text kept in each Parquet footer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from koku_dagster.ingest.aws_columns import TIMESTAMP_TYPE
from koku_dagster.ingest.aws_source import Manifest, ReportFiles
from koku_dagster.ingest.csv_parquet import (
    ConversionCounts,
    OpenFile,
    column_position,
    convert_manifest_files,
    footer_stats,
    read_header,
    report_stem,
    write_converted,
)
from koku_dagster.ingest.errors import ReportFormatError
from koku_dagster.ingest.results import LineItemsResult

#: ``strptime`` formats tried for dates and times that are not ISO 8601.
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")


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


class CsvTable(ConversionCounts):
    """Turns the record batches of one CSV file (one header) into tables of a fixed schema.

    Subclasses set ``SCHEMA``, ``REQUIRED`` (normalised names every file must have) and ``RAW_SUMS``
    (amount columns whose raw text is summed exactly), and implement :meth:`convert` with the helpers.
    When two headers normalise to the same name, the first one wins.
    """

    SCHEMA: ClassVar[pa.Schema]
    REQUIRED: ClassVar[tuple[str, ...]]
    RAW_SUMS: ClassVar[tuple[str, ...]]

    def __init__(self, headers: list[str], name: str, month: date) -> None:
        super().__init__(self.RAW_SUMS)
        self.columns: dict[str, str] = {}
        for i, header in enumerate(headers):
            self.columns.setdefault(self.column_name(header), column_position(i))
        missing = [c for c in self.REQUIRED if c not in self.columns]
        if missing:
            raise ReportFormatError(f"{name}: required column(s) missing: {', '.join(missing)}")
        self.month = month

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
        return self.cast_amounts(self.text(batch, name), name)

    def timestamps(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        """ISO 8601 or :data:`DATE_FORMATS` dates/times as UTC timestamps; unparseable cells null and counted."""
        if name not in self.columns:
            return pa.nulls(batch.num_rows, TIMESTAMP_TYPE)
        return self.cast_timestamps(self.text(batch, name), DATE_FORMATS)

    def finish(self, out: dict[str, pa.Array], start: pa.Array, keep: pa.Array, raw: dict[str, pa.Array]) -> pa.Table:
        """The kept rows as a table (see :meth:`~ConversionCounts.keep_rows`)."""
        return self.keep_rows(out, self.SCHEMA, start, keep, raw)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        raise NotImplementedError

    def stats(self, source_rows: int) -> FileStats:
        return FileStats(source_rows, self.rows, self.outside, self.no_start, self.uncast, dict(self.raw))


TableFactory = Callable[[list[str], str, date], CsvTable]


def convert_csv(open_file: OpenFile, name: str, month: date, out_path: Path, make_table: TableFactory) -> FileStats:
    """Convert one CSV(.gz) file to ``out_path`` with the table ``make_table`` builds for its header.

    Raises :class:`ReportFormatError` (missing required columns, wrong extension) and
    :class:`CorruptReportError` (truncated or malformed); no output file is left behind on error.
    """
    headers = read_header(open_file, name)
    table = make_table(headers, name, month)
    return write_converted(open_file, name, len(headers), table, table.SCHEMA, out_path)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", report_stem(name))


def convert_files(
    source: ReportFiles, manifest: Manifest, partition: Path, make_table: TableFactory, max_workers: int = 2
) -> LineItemsResult[FileStats]:
    """Convert every file of ``manifest`` into ``partition``, replaced whole; any error leaves it untouched."""
    convert = partial(convert_csv, make_table=make_table)
    return convert_manifest_files(
        source, manifest, partition, convert, FileStats.total, stem=_safe_stem, max_workers=max_workers
    )


def export_footer_stats(files: list[Path]) -> tuple[int, FileStats]:
    """(rows written, conversion figures) from the footers of export line-item files."""
    return footer_stats(files, FileStats.from_json, FileStats.total)
