"""Archived copies of a manifest's report files (``data/csv/...``): what conversion reads."""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from koku_dagster.reports.model import Manifest, ReportFiles


class ArchivedReports:
    """The archived copies of one manifest's files, opened by manifest key."""

    def __init__(self, archive: Path, manifest: Manifest) -> None:
        self.archive = archive
        self._names = {f.key: f.name for f in manifest.files}

    def open_file(self, key: str) -> BinaryIO:
        return (self.archive / self._names[key]).open("rb")


def archive_file(source: ReportFiles, key: str, target: Path) -> int:
    """Copy one report file to ``target`` (streaming); return its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(source.open_file(key)) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return target.stat().st_size
