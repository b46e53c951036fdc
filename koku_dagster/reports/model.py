"""What every provider type's reports look like to the workflow: files, manifests and their sources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from koku_dagster.reports.errors import UnsafeReportPathError


@dataclass(frozen=True)
class ReportFile:
    """One report file of a manifest: its key as listed, and its path on disk for local sources."""

    key: str
    local_path: Path | None = None

    @property
    def name(self) -> str:
        """The file name (last key segment)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Manifest:
    """One export (assembly) of one billing month and the report files it lists."""

    assembly_id: str
    billing_period_start: date
    report_name: str
    manifest_key: str
    export_datetime: datetime
    files: tuple[ReportFile, ...]


class ReportFiles(Protocol):
    """Anything that opens report files by manifest key (a source, or archived copies of its files)."""

    def open_file(self, key: str) -> BinaryIO:
        """Open a report file, named by its manifest key, for binary reading."""
        ...


class ReportSource(ReportFiles, Protocol):
    """A place holding a provider's reports (a local directory, an S3 bucket, ...)."""

    def find_manifest(self, month: date) -> Manifest | None:
        """The manifest of the billing month starting at ``month`` (a 1st), or None if there is none."""
        ...

    def etag(self, key: str) -> str:
        """A tag that changes whenever the file's content changes."""
        ...


def key_parts(key: str) -> list[str]:
    """The segments of a manifest key; refuses ``..``/``.`` segments, backslashes and NUL bytes."""
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in ("..", ".") or "\x00" in p or "\\" in p for p in parts):
        raise UnsafeReportPathError(f"refusing unsafe report key {key!r}")
    return parts
