"""What the ingestion steps of every provider type return, and helpers for their month totals."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

CENT = Decimal("0.01")


@dataclass(frozen=True)
class FileStats:
    """What a conversion read, wrote and dropped, with exact sums of the kept rows' raw amount text.

    Each line-item Parquet file carries its own in its footer.
    """

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

    def raw(self, name: str) -> Decimal:
        """The exact sum of a raw amount (0 if it was not summed)."""
        return self.raw_sums.get(name, Decimal(0))

    @classmethod
    def total(cls, parts: Iterable[FileStats]) -> FileStats:
        return sum(parts, start=cls())

    def as_dict(self) -> dict[str, int | str]:
        """JSON-friendly and flat: sums as text under ``raw_{name}``."""
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw_sums"}
        return counts | {f"raw_{k}": str(v) for k, v in sorted(self.raw_sums.items())}

    @classmethod
    def from_json(cls, text: str | bytes) -> FileStats:
        doc = json.loads(text)
        sums = {k.removeprefix("raw_"): Decimal(v) for k, v in doc.items() if k.startswith("raw_")}
        return cls(**{k: int(v) for k, v in doc.items() if not k.startswith("raw_")}, raw_sums=sums)


@dataclass(frozen=True)
class ConvertedFile:
    """One report file converted to one line-item Parquet file."""

    key: str
    path: Path
    bytes: int
    stats: FileStats


@dataclass(frozen=True)
class LineItemsResult:
    """The month's line-item partition as written from one manifest, with the files' summed figures."""

    assembly_id: str
    partition: Path
    files: tuple[ConvertedFile, ...]
    stats: FileStats

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


def match_to_cent(*pairs: tuple[Decimal, Decimal]) -> bool:
    """Whether each (got, want) pair is equal to the cent."""
    return all(abs(got - want) < CENT / 2 for got, want in pairs)


def totals_metadata(totals: Any, **checks: bool) -> dict[str, Any]:
    """A month-totals dataclass and its ``checks`` as flat, JSON-friendly Dagster metadata (decimals as text)."""
    values = {f.name: getattr(totals, f.name) for f in fields(totals)}
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()} | checks


class CostTotals:
    """Base of a cloud type's month-totals dataclass: :attr:`MATCHED` names the (got, want) field pairs
    that must agree to the cent for :attr:`costs_match`, :attr:`HEADLINE` the summary sums shown."""

    MATCHED: ClassVar[tuple[tuple[str, str], ...]]
    #: Metadata name -> field of the summary sums shown with the summary.
    HEADLINE: ClassVar[dict[str, str]]

    source_rows: int
    line_item_rows: int
    summary_rows: int
    rows_without_usage_start: int
    #: Summary rows outside the (billing or invoice) month; must be 0.
    summary_rows_outside_month: int

    @property
    def rows_left_out(self) -> int:
        """Report rows of another month, left out by the conversion (normal)."""
        return int(getattr(self, "rows_outside_month"))  # noqa: B009 - GCP names it otherwise

    @property
    def daily_rows_present(self) -> bool:
        """Whether daily line items exist (always, for a type without a daily table)."""
        return int(getattr(self, "daily_rows", 1)) > 0

    @property
    def counts_consistent(self) -> bool:
        """Every source row became a line item or was left out; daily and summary rows exist when line items do."""
        accounted = self.line_item_rows + self.rows_left_out + self.rows_without_usage_start == self.source_rows
        return accounted and (self.line_item_rows == 0 or (self.daily_rows_present and self.summary_rows > 0))

    def headline(self) -> dict[str, str]:
        return {name: str(getattr(self, field_name)) for name, field_name in self.HEADLINE.items()}

    @property
    def costs_match(self) -> bool:
        """The summed costs equal the raw report's to the cent."""
        return match_to_cent(*((getattr(self, got), getattr(self, want)) for got, want in self.MATCHED))

    def metadata(self) -> dict[str, Any]:
        return totals_metadata(self, costs_match=self.costs_match)
