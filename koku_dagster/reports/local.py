"""Reports in a local directory: every file opened stays inside it (no ``..`` keys, no symlinks out)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from koku_dagster.reports.errors import IngestError, ReportFileMissingError, UnsafeReportPathError
from koku_dagster.reports.model import key_parts


class LocalReports:
    """The file side of a local report source; each provider type adds how it finds a month's manifest.

    The directory itself must already be an allowed bucket root (checked by the provider type).
    """

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise IngestError(f"report directory does not exist: {directory}")
        self.root = directory.resolve()

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            where = path.relative_to(self.root)
            raise UnsafeReportPathError(f"refusing {where}: it leads outside the report directory")
        return resolved

    def path_of(self, key: str) -> Path:
        """The local file of a manifest key: relative to the directory, with or without a leading bucket name."""
        parts = key_parts(key)
        candidates = [self.root.joinpath(*parts)]
        if len(parts) > 1 and parts[0] == self.root.name:
            candidates.append(self.root.joinpath(*parts[1:]))
        for candidate in candidates:
            if candidate.exists() or candidate.is_symlink():
                real = self._inside(candidate)
                if real.is_file():
                    return real
        raise ReportFileMissingError(key)

    def open_file(self, key: str) -> BinaryIO:
        return self.path_of(key).open("rb")

    def etag(self, key: str) -> str:
        st = self.path_of(key).stat()
        return hashlib.sha256(f"{key}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
