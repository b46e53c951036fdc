"""Streaming CSV(.gz) -> Parquet conversion shared by every provider type.

CSV columns are read by position (``c0``, ``c1``, ...) as text in record batches, typed by a
:class:`CsvTable` subclass per report format with lenient, counted casts, and written to zstd Parquet
whose footer keeps the conversion figures (:class:`FileStats`, :data:`STATS_METADATA_KEY`), so memory
stays bounded by a few batches whatever the file size.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from koku_dagster.reports.errors import CorruptReportError, ManifestError, ReportFormatError
from koku_dagster.reports.model import Manifest, ReportFile, ReportFiles
from koku_dagster.reports.months import month_range
from koku_dagster.reports.paths import replacing
from koku_dagster.reports.results import ConvertedFile, FileStats, LineItemsResult

STATS_METADATA_KEY = b"koku_dagster.conversion"
BLOCK_SIZE = 1 << 20
BATCH_ROWS = 32_768
NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,2})?$"  # finite as DOUBLE
_EXACT = pa.decimal256(76, 38)
_MAX_HEADER_BYTES = 1 << 20

#: Every timestamp column of every line-item schema.
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
#: ``strptime`` formats tried for dates and times that are not ISO 8601.
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")

OpenFile = Callable[[], BinaryIO]


def column_position(index: int) -> str:
    """The name under which :func:`record_batches` reads the CSV column at ``index``."""
    return f"c{index}"


def _input_stream(raw: BinaryIO, name: str) -> pa.NativeFile:
    stream = pa.PythonFile(raw, mode="r")
    if name.endswith(".csv.gz"):
        return pa.CompressedInputStream(stream, "gzip")
    if name.endswith(".csv"):
        return stream
    raise ReportFormatError(f"{name}: not a .csv or .csv.gz report file")


def read_header(open_file: OpenFile, name: str) -> list[str]:
    """The column names of a CSV(.gz) file (first line; a UTF-8 BOM is ignored)."""
    with open_file() as raw:
        stream = _input_stream(raw, name)
        head = b""
        try:
            while b"\n" not in head and len(head) < _MAX_HEADER_BYTES:
                chunk = stream.read(64 * 1024)
                if not chunk:
                    break
                head += chunk
        except OSError as exc:
            raise CorruptReportError(f"{name}: cannot decompress ({exc})") from None
    line = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return next(csv.reader(io.StringIO(line)), [])


def record_batches(open_file: OpenFile, name: str, width: int, needed: list[str]) -> Iterator[pa.RecordBatch]:
    """The needed columns (by position) as text, in record batches of about ``BATCH_ROWS`` rows."""
    rows = 0
    names = [column_position(i) for i in range(width)]
    read_options = pacsv.ReadOptions(block_size=BLOCK_SIZE, column_names=names, skip_rows=1)
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in needed},
        include_columns=needed,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    with open_file() as raw:
        pending: list[pa.RecordBatch] = []
        try:  # the reader parses its first block on opening
            for batch in pacsv.open_csv(_input_stream(raw, name), read_options, convert_options=convert_options):
                pending.append(batch)
                rows += batch.num_rows
                if sum(b.num_rows for b in pending) >= BATCH_ROWS:
                    yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
                    pending = []
        except (OSError, pa.ArrowInvalid) as exc:  # truncated compression, rows of the wrong width
            raise CorruptReportError(f"{name}: unreadable after {rows} rows ({exc})") from None
        if pending:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


# ---------------------------------------------------------------- typing text columns


def blank_to_null(text: pa.Array) -> pa.Array:
    """Empty strings as null."""
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def exact_sum(text: pa.Array) -> Decimal:
    """Exact sum of numeric text (DECIMAL(76, 38); Python decimals for values beyond that range)."""
    try:
        total = pc.sum(pc.cast(text, _EXACT)).as_py()
    except pa.ArrowInvalid:
        return sum((Decimal(v) for v in text.to_pylist() if v is not None), start=Decimal(0))
    return Decimal(0) if total is None else Decimal(total)


def lenient_amounts(text: pa.Array) -> tuple[pa.Array, pa.Array, int]:
    """(numeric text, float64, non-numeric cells) of a column; empty and non-numeric cells give null."""
    present = blank_to_null(text)
    try:
        values = pc.cast(present, pa.float64())
        if pc.all(pc.is_finite(values)).as_py() is not False:  # Arrow also parses "inf" and "nan"
            return present, values, 0
    except pa.ArrowInvalid:
        pass
    numeric = pc.if_else(pc.match_substring_regex(present, NUMBER), present, pa.scalar(None, pa.string()))
    return numeric, pc.cast(numeric, pa.float64()), numeric.null_count - present.null_count


def parse_time(text: str | None, formats: tuple[str, ...] = ()) -> datetime | None:
    """ISO 8601 (else one of the ``strptime`` ``formats``) as UTC; naive values are taken as UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in formats:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def distinct_map(text: pa.Array, fn: Callable[[str], str | None]) -> tuple[pa.Array, int]:
    """``fn`` applied once per distinct value of a text column; (results, rows where it gave None)."""
    encoded = pc.dictionary_encode(text)
    mapped = [fn(v) for v in encoded.dictionary.to_pylist()]
    values = pc.take(pa.array(mapped, pa.string()), encoded.indices)
    return values, values.null_count - text.null_count


def lenient_timestamps(text: pa.Array, formats: tuple[str, ...] = ()) -> tuple[pa.Array, int]:
    """(UTC timestamps, unparseable non-empty cells) of date/time text, parsed by :func:`parse_time`."""
    present = blank_to_null(text)
    try:
        return pc.cast(present, TIMESTAMP_TYPE), 0
    except pa.ArrowInvalid:
        pass
    encoded = pc.dictionary_encode(present)
    parsed = pa.array([parse_time(v, formats) for v in encoded.dictionary.to_pylist()], TIMESTAMP_TYPE)
    values = pc.take(parsed, encoded.indices)
    return values, values.null_count - present.null_count


def in_month(timestamps: pa.Array, month: date) -> pa.Array:
    """Whether each timestamp lies in the billing month (null -> False)."""
    start, end = month_range(month)
    inside = pc.and_(
        pc.greater_equal(timestamps, pa.scalar(start, TIMESTAMP_TYPE)),
        pc.less(timestamps, pa.scalar(end, TIMESTAMP_TYPE)),
    )
    return pc.fill_null(inside, False)


class ConversionCounts:
    """The counters of one file's conversion and exact sums of the kept rows' raw amount text.

    Counts rows kept, outside the month (dropped) and without a start, and cells the ``cast_*`` and
    :meth:`map_distinct` helpers could not convert.
    """

    def __init__(self, raw_sums: Iterable[str]) -> None:
        self.rows = self.outside = self.no_start = self.uncast = 0
        self.raw = {c: Decimal(0) for c in raw_sums}

    def cast_amounts(self, text: pa.Array, column: str | None = None) -> tuple[pa.Array, pa.Array]:
        """(numeric text, float64) by :func:`lenient_amounts`.

        Other amounts are lenient (null and counted), but a cost ``column`` whose raw sum is kept
        (one of ``raw_sums``) must be numeric: a cost that cannot be read fails the file, since the
        month's total would otherwise be wrong without anyone noticing.
        """
        numeric, values, bad = lenient_amounts(text)
        if bad and column in self.raw:
            example = pc.filter(text, pc.and_(pc.is_null(numeric), pc.not_equal(text, "")))[0].as_py()
            raise ReportFormatError(f"non-numeric {column} value {str(example)[:40]!r} ({bad} such cells)")
        self.uncast += bad
        return numeric, values

    def cast_timestamps(self, text: pa.Array, formats: tuple[str, ...] = ()) -> pa.Array:
        """UTC timestamps by :func:`lenient_timestamps`."""
        values, bad = lenient_timestamps(text, formats)
        self.uncast += bad
        return values

    def map_distinct(self, text: pa.Array, fn: Callable[[str], str | None]) -> pa.Array:
        """``fn`` by :func:`distinct_map`; rows where it gave None become null."""
        values, bad = distinct_map(text, fn)
        self.uncast += bad
        return values

    def keep_rows(
        self, out: dict[str, pa.Array], schema: pa.Schema, start: pa.Array, keep: pa.Array, raw: dict[str, pa.Array]
    ) -> pa.Table:
        """The ``keep`` rows of ``out`` as a table; counts kept, dropped and start-less rows, sums ``raw`` text."""
        kept = pc.sum(keep).as_py() or 0
        self.rows += kept
        self.no_start += start.null_count
        self.outside += len(start) - kept - start.null_count
        for name in self.raw.keys() & raw.keys():
            self.raw[name] += exact_sum(pc.filter(raw[name], keep))
        return pa.Table.from_pydict(out, schema=schema).filter(keep)


# ---------------------------------------------------------------- tables, files and manifests


def normalise_name(header: str) -> str:
    """Koku's column name normalisation: ``service.id`` -> ``service_id``, ``UsageDateTime`` -> ``usagedatetime``."""
    return re.sub(r"\W+", "_", header.strip().lstrip("\ufeff")).lower()


class CsvTable(ConversionCounts):
    """Turns the record batches of one CSV file (one header) into tables of a fixed schema.

    Subclasses set ``SCHEMA``, ``REQUIRED`` (column names every file must have) and ``RAW_SUMS``
    (amount column -> the name its exact raw sum is kept under), and implement :meth:`convert` with the
    helpers. Headers are named by :meth:`map_columns`; when two headers get the same name, the first wins.
    """

    SCHEMA: ClassVar[pa.Schema]
    REQUIRED: ClassVar[tuple[str, ...]]
    RAW_SUMS: ClassVar[dict[str, str]]
    #: Non-ISO date/time formats accepted by :meth:`timestamps`.
    TIME_FORMATS: ClassVar[tuple[str, ...]] = DATE_FORMATS

    def __init__(self, headers: list[str], name: str, month: date) -> None:
        super().__init__(self.RAW_SUMS)
        self.columns = self.map_columns(headers)
        missing = [c for c in self.REQUIRED if c not in self.columns]
        if missing:
            raise ReportFormatError(f"{name}: required column(s) missing: {', '.join(missing)}")
        self.month = month

    def map_columns(self, headers: list[str]) -> dict[str, str]:
        """Column name (by :meth:`column_name`) -> positional CSV name."""
        columns: dict[str, str] = {}
        for i, header in enumerate(headers):
            columns.setdefault(self.column_name(header), column_position(i))
        return columns

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
        """ISO 8601 or :attr:`TIME_FORMATS` dates/times as UTC timestamps; unparseable cells null and counted."""
        if name not in self.columns:
            return pa.nulls(batch.num_rows, TIMESTAMP_TYPE)
        return self.cast_timestamps(self.text(batch, name), self.TIME_FORMATS)

    def finish(self, out: dict[str, pa.Array], start: pa.Array, keep: pa.Array, raw: dict[str, pa.Array]) -> pa.Table:
        """The kept rows as a table (see :meth:`~ConversionCounts.keep_rows`)."""
        return self.keep_rows(out, self.SCHEMA, start, keep, raw)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        raise NotImplementedError

    def stats(self, source_rows: int) -> FileStats:
        sums = {self.RAW_SUMS[column]: total for column, total in self.raw.items()}
        return FileStats(source_rows, self.rows, self.outside, self.no_start, self.uncast, sums)


TableFactory = Callable[[list[str], str, date], CsvTable]


def convert_csv(open_file: OpenFile, name: str, month: date, out_path: Path, make_table: TableFactory) -> FileStats:
    """Convert one CSV(.gz) file to ``out_path`` with the table ``make_table`` builds for its header.

    Raises :class:`ReportFormatError` (missing required columns, wrong extension) and
    :class:`CorruptReportError` (truncated or malformed); no output file is left behind on error.
    """
    headers = read_header(open_file, name)
    table = make_table(headers, name, month)
    return write_converted(open_file, name, len(headers), table, out_path)


def write_converted(open_file: OpenFile, name: str, width: int, table: CsvTable, out_path: Path) -> FileStats:
    """Convert a CSV of ``width`` columns to ``out_path`` with its figures in the footer; no file is left on error."""
    source_rows = 0
    try:
        with pq.ParquetWriter(out_path, table.SCHEMA, compression="zstd") as writer:
            for batch in record_batches(open_file, name, width, table.needed()):
                source_rows += batch.num_rows
                writer.write_table(table.convert(batch))
            stats = table.stats(source_rows)
            writer.add_key_value_metadata({STATS_METADATA_KEY: json.dumps(stats.as_dict())})
    except ReportFormatError as exc:
        out_path.unlink(missing_ok=True)
        message = str(exc)
        raise ReportFormatError(message if message.startswith(f"{name}:") else f"{name}: {message}") from None
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return stats


def report_stem(name: str) -> str:
    """A report file name without ``.csv``/``.csv.gz``."""
    return name.removesuffix(".gz").removesuffix(".csv")


def safe_stem(name: str) -> str:
    """:func:`report_stem` with characters other than word characters, ``.`` and ``-`` replaced."""
    return re.sub(r"[^\w.-]", "_", report_stem(name))


def convert_files(
    source: ReportFiles,
    manifest: Manifest,
    partition: Path,
    make_table: TableFactory,
    *,
    stem: Callable[[str], str] = safe_stem,
    max_workers: int = 2,
) -> LineItemsResult:
    """Convert every file of ``manifest`` into ``partition``, replaced whole.

    Files are converted concurrently (threads: Arrow releases the GIL while parsing and writing). Any
    file's error (:class:`~koku_dagster.reports.errors.IngestError`) aborts the step and leaves the
    previous partition untouched.
    """
    month = manifest.billing_period_start
    stems = [stem(f.name) for f in manifest.files]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise ManifestError(f"report files would share a line-item file name ({twice[0]}.parquet); rename one")
    with replacing(partition) as staging, ThreadPoolExecutor(max_workers=max_workers) as pool:

        def convert_one(file: ReportFile) -> ConvertedFile:
            target = staging / f"{stem(file.name)}.parquet"
            stats = convert_csv(lambda: source.open_file(file.key), file.name, month, target, make_table)
            return ConvertedFile(file.key, partition / target.name, target.stat().st_size, stats)

        converted = tuple(pool.map(convert_one, manifest.files))
    pa.default_memory_pool().release_unused()  # hand Arrow's cached buffers back before the next step
    return LineItemsResult(manifest.assembly_id, partition, converted, FileStats.total(f.stats for f in converted))


def footer_stats(files: list[Path]) -> tuple[int, FileStats]:
    """(rows written, summed conversion figures) from the footers of converted line-item files."""
    footers = [pq.read_metadata(p) for p in files]
    return sum(f.num_rows for f in footers), FileStats.total(
        FileStats.from_json(f.metadata[STATS_METADATA_KEY]) for f in footers
    )
