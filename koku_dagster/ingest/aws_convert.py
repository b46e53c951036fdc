"""Conversion of one CUR CSV(.gz) file to a line-item Parquet file of the fixed schema.

The CSV is streamed by :mod:`~koku_dagster.ingest.csv_parquet`; each batch is typed and normalised with
Arrow compute kernels by :class:`_Normaliser`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

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
from koku_dagster.ingest.csv_parquet import (
    ConversionCounts,
    OpenFile,
    column_position,
    in_month,
    read_header,
    write_converted,
)
from koku_dagster.ingest.errors import ReportFormatError


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


class _Normaliser(ConversionCounts):
    """Turns record batches of one file (one header) into tables of the fixed line-item schema.

    CSV columns are addressed by position (``c0``, ``c1``, ...), so duplicate or odd header names do
    no harm; when two headers map to the same column or JSON key, the first one wins.
    """

    def __init__(self, mappings: list[ColumnMapping], month: date) -> None:
        super().__init__((UNBLENDED_COST, BLENDED_COST))

        def first(role: Role) -> dict[str, str]:
            return {m.name: column_position(i) for i, m in reversed(list(enumerate(mappings))) if m.role is role}

        self.columns = first(Role.COLUMN)
        self.tags = sorted(first(Role.USER_TAG).items())
        self.categories = sorted(first(Role.COST_CATEGORY).items())
        self.month = month

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
            out[name] = self.cast_timestamps(batch.column(header)) if header else pa.nulls(n, TIMESTAMP_TYPE)
        texts: dict[str, pa.Array] = {}
        for name in AMOUNT_COLUMNS:
            header = self.columns.get(name)
            if header:
                texts[name], out[name] = self.cast_amounts(batch.column(header), name)
            else:
                out[name] = pa.repeat(pa.scalar(0.0), n)
        out[RESOURCE_TAGS] = _json_objects([(k, batch.column(h)) for k, h in self.tags], n)
        out[COST_CATEGORY] = _json_objects([(k, batch.column(h)) for k, h in self.categories], n)
        start = out[USAGE_START]
        return self.keep_rows(out, LINE_ITEM_SCHEMA, start, in_month(start, self.month), texts)

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


def convert_file(open_file: OpenFile, name: str, month: date, out_path: Path) -> ConversionStats:
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
    return write_converted(open_file, name, len(headers), _Normaliser(mappings, month), LINE_ITEM_SCHEMA, out_path)
