"""Archived copies of a manifest's report files (``data/csv/...``): what conversion reads."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from koku_dagster.reports.errors import ReportTooLargeError
from koku_dagster.reports.model import Manifest, ReportFiles

#: Largest report file archived (a month's CUR part is a few GiB at most); more is refused, not filled in.
MAX_ARCHIVED_FILE_BYTES = 64 << 30
CHUNK_BYTES = 1 << 20


class ArchivedReports:
    """The archived copies of one manifest's files, opened by manifest key."""

    def __init__(self, archive: Path, manifest: Manifest) -> None:
        self.archive = archive
        self._names = {f.key: f.name for f in manifest.files}

    def open_file(self, key: str) -> BinaryIO:
        return (self.archive / self._names[key]).open("rb")


def archive_file(source: ReportFiles, key: str, target: Path, max_bytes: int = MAX_ARCHIVED_FILE_BYTES) -> int:
    """Copy one report file to ``target`` (streaming); return its size. A file larger than
    ``max_bytes`` raises :class:`ReportTooLargeError` and leaves nothing at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    try:
        with closing(source.open_file(key)) as src, target.open("wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                copied += len(chunk)
                if copied > max_bytes:
                    raise ReportTooLargeError(f"report file {key} exceeds {max_bytes} bytes")
                dst.write(chunk)
    except ReportTooLargeError:
        target.unlink(missing_ok=True)
        raise
    return copied
