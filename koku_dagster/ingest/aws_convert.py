"""Streaming conversion of one CUR CSV(.gz) file to a line-item Parquet file of the fixed schema.

The CSV is read in record batches (``pyarrow.csv.open_csv``, every needed column as text), each batch
is typed and normalised with Arrow compute kernels and appended to a Parquet writer, so memory stays
bounded by a few batches whatever the file size.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from koku_dagster.ingest.aws_columns import (
    AMOUNT_COLUMNS,
    BLENDED_COST,
    COST_CATEGORY,
    LINE_ITEM_SCHEMA,
    REQUIRED_COLUMNS,
    RESOURCE_TAGS,
    STRING_COLUMNS,
    TIMESTAMP_COLUMNS,
    TIMESTAMP_TYPE,
    UNBLENDED_COST,
    USAGE_START,
    ColumnMapping,
    Role,
    map_header,
)
from koku_dagster.ingest.errors import CorruptReportError, ReportFormatError

STATS_METADATA_KEY = b"koku_dagster.conversion"
BLOCK_SIZE = 1 << 20
BATCH_ROWS = 32_768
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,2})?$"  # finite as DOUBLE
_EXACT = pa.decimal256(76, 38)
_MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class ConversionStats:
    """What a conversion read, wrote and dropped; each Parquet file carries its own in its footer."""

    source_rows: int = 0
    rows: int = 0
    rows_outside_month: int = 0
    rows_without_usage_start: int = 0
    uncast_cells: int = 0
    raw_unblended_cost: Decimal = Decimal(0)
    raw_blended_cost: Decimal = Decimal(0)

    def __add__(self, other: ConversionStats) -> ConversionStats:
        return ConversionStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @classmethod
    def total(cls, parts: Iterable[ConversionStats]) -> ConversionStats:
        return sum(parts, start=cls())

    def as_dict(self) -> dict[str, int | str]:
        """JSON-friendly: decimal sums as text."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, text: str | bytes) -> ConversionStats:
        doc = json.loads(text)
        return cls(**{f.name: Decimal(doc[f.name]) if f.type == "Decimal" else int(doc[f.name]) for f in fields(cls)})


def _plain(value: int | Decimal) -> int | str:
    return str(value) if isinstance(value, Decimal) else value


class _Normaliser:
    """Turns record batches of one file (one header) into tables of the fixed line-item schema.

    CSV columns are addressed by position (``c0``, ``c1``, ...), so duplicate or odd header names do
    no harm; when two headers map to the same column or JSON key, the first one wins.
    """

    def __init__(self, mappings: list[ColumnMapping], month: date) -> None:
        def first(role: Role) -> dict[str, str]:
            return {m.name: _position(i) for i, m in reversed(list(enumerate(mappings))) if m.role is role}

        self.columns = first(Role.COLUMN)
        self.tags = sorted(first(Role.USER_TAG).items())
        self.categories = sorted(first(Role.COST_CATEGORY).items())
        start = datetime(month.year, month.month, 1, tzinfo=UTC)
        end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        self.month_start = pa.scalar(start, TIMESTAMP_TYPE)
        self.month_end = pa.scalar(end, TIMESTAMP_TYPE)
        self.rows = self.outside = self.no_start = self.uncast = 0
        self.raw = {UNBLENDED_COST: Decimal(0), BLENDED_COST: Decimal(0)}

    def needed(self) -> list[str]:
        """The positional names of the CSV columns to read."""
        return list(self.columns.values()) + [c for _, c in self.tags] + [c for _, c in self.categories]

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        """The batch's rows of the billing month, typed; updates the counters and exact cost sums."""
        n = batch.num_rows
        out: dict[str, pa.Array] = {}
        for name in STRING_COLUMNS:
            header = self.columns.get(name)
            out[name] = batch.column(header) if header else pa.repeat("", n)
        for name in TIMESTAMP_COLUMNS:
            header = self.columns.get(name)
            out[name] = self._timestamps(batch.column(header)) if header else pa.nulls(n, TIMESTAMP_TYPE)
        texts: dict[str, pa.Array] = {}
        for name in AMOUNT_COLUMNS:
            header = self.columns.get(name)
            if header:
                texts[name], out[name] = self._amounts(batch.column(header))
            else:
                out[name] = pa.repeat(pa.scalar(0.0), n)
        out[RESOURCE_TAGS] = _json_objects([(k, batch.column(h)) for k, h in self.tags], n)
        out[COST_CATEGORY] = _json_objects([(k, batch.column(h)) for k, h in self.categories], n)

        start = out[USAGE_START]
        keep = pc.and_(pc.greater_equal(start, self.month_start), pc.less(start, self.month_end))
        kept = pc.sum(keep).as_py() or 0
        self.rows += kept
        self.no_start += start.null_count
        self.outside += n - kept - start.null_count
        for name in self.raw.keys() & texts.keys():
            self.raw[name] += _exact_sum(pc.filter(texts[name], keep))
        return pa.Table.from_pydict(out, schema=LINE_ITEM_SCHEMA).filter(keep)

    def _amounts(self, text: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(numeric text, float64) of a column; empty and non-numeric cells give null, the latter counted."""
        present = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            values = pc.cast(present, pa.float64())
            if pc.all(pc.is_finite(values)).as_py() is not False:  # Arrow also parses "inf" and "nan"
                return present, values
        except pa.ArrowInvalid:
            pass
        numeric = pc.if_else(pc.match_substring_regex(present, _NUMBER), present, pa.scalar(None, pa.string()))
        self.uncast += numeric.null_count - present.null_count
        return numeric, pc.cast(numeric, pa.float64())

    def _timestamps(self, text: pa.Array) -> pa.Array:
        """ISO 8601 text as UTC timestamps; unparseable non-empty cells become null and are counted."""
        present = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            return pc.cast(present, TIMESTAMP_TYPE)
        except pa.ArrowInvalid:
            parsed = pa.array([_parse_timestamp(v) for v in present.to_pylist()], TIMESTAMP_TYPE)
            self.uncast += parsed.null_count - present.null_count
            return parsed

    def stats(self, source_rows: int) -> ConversionStats:
        return ConversionStats(
            source_rows=source_rows,
            rows=self.rows,
            rows_outside_month=self.outside,
            rows_without_usage_start=self.no_start,
            uncast_cells=self.uncast,
            raw_unblended_cost=self.raw[UNBLENDED_COST],
            raw_blended_cost=self.raw[BLENDED_COST],
        )


def _parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _exact_sum(text: pa.Array) -> Decimal:
    """Exact sum of numeric text (DECIMAL(76, 38); Python decimals for values beyond that range)."""
    try:
        total = pc.sum(pc.cast(text, _EXACT)).as_py()
    except pa.ArrowInvalid:
        return sum((Decimal(v) for v in text.to_pylist() if v is not None), start=Decimal(0))
    return Decimal(0) if total is None else Decimal(total)


def _position(index: int) -> str:
    return f"c{index}"


def _json_objects(items: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """One compact JSON object per row from (key, text column) pairs; empty values are left out.

    Each column is dictionary-encoded and every distinct value is encoded as a JSON member once; tag
    values repeat heavily (per resource), so this is far cheaper than building strings row by row.
    """
    if not items:
        return pa.repeat("{}", n)
    members = []
    for key, values in items:
        encoded = pc.dictionary_encode(values)
        name = json.dumps(key, ensure_ascii=False)
        texts = [f",{name}:{json.dumps(v, ensure_ascii=False)}" if v else "" for v in encoded.dictionary.to_pylist()]
        members.append(pc.take(pa.array(texts, pa.string()), encoded.indices))
    body = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*members, ""), 1)
    return pc.binary_join_element_wise("{", body, "}", "")


def _input_stream(raw: BinaryIO, name: str) -> pa.NativeFile:
    stream = pa.PythonFile(raw, mode="r")
    if name.endswith(".csv.gz"):
        return pa.CompressedInputStream(stream, "gzip")
    if name.endswith(".csv"):
        return stream
    raise ReportFormatError(f"{name}: not a .csv or .csv.gz report file")


def read_header(open_file: Callable[[], BinaryIO], name: str) -> list[str]:
    """The column names of a CUR CSV (first line; a UTF-8 BOM is ignored)."""
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


def _batches(open_file: Callable[[], BinaryIO], name: str, width: int, needed: list[str]) -> Iterator[pa.RecordBatch]:
    """The needed columns (by position) as text, in record batches of about ``BATCH_ROWS`` rows."""
    rows = 0
    names = [_position(i) for i in range(width)]
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


def convert_file(open_file: Callable[[], BinaryIO], name: str, month: date, out_path: Path) -> ConversionStats:
    """Convert one CUR file to ``out_path`` keeping the rows of ``month``; return what was read and kept.

    Raises :class:`ReportFormatError` when required columns are missing and :class:`CorruptReportError`
    for truncated or malformed files; no output file is left behind on error.
    """
    headers = read_header(open_file, name)
    mappings = [map_header(h) for h in headers]
    present = {m.name for m in mappings if m.role is Role.COLUMN}
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise ReportFormatError(f"{name}: required column(s) missing: {', '.join(missing)}")
    normaliser = _Normaliser(mappings, month)
    source_rows = 0
    try:
        with pq.ParquetWriter(out_path, LINE_ITEM_SCHEMA, compression="zstd") as writer:
            for batch in _batches(open_file, name, len(headers), normaliser.needed()):
                source_rows += batch.num_rows
                writer.write_table(normaliser.convert(batch))
            stats = normaliser.stats(source_rows)
            writer.add_key_value_metadata({STATS_METADATA_KEY: json.dumps(stats.as_dict())})
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return stats
