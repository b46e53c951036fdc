"""What the ingestion steps of every provider type return, and helpers for their month totals."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

CENT = Decimal("0.01")


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


def match_to_cent(*pairs: tuple[Decimal, Decimal]) -> bool:
    """Whether each (got, want) pair is equal to the cent."""
    return all(abs(got - want) < CENT / 2 for got, want in pairs)


def totals_metadata(totals: Any, **checks: bool) -> dict[str, Any]:
    """A month-totals dataclass and its ``checks`` as flat, JSON-friendly Dagster metadata (decimals as text)."""
    values = {f.name: getattr(totals, f.name) for f in fields(totals)}
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()} | checks


class CostTotals(ABC):
    """Base of a cloud provider's month-totals dataclass, whose check is :attr:`costs_match`."""

    @property
    @abstractmethod
    def costs_match(self) -> bool:
        """The summed costs equal the raw report's to the cent."""

    def metadata(self) -> dict[str, Any]:
        return totals_metadata(self, costs_match=self.costs_match)
