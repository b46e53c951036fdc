"""Where GCP billing exports come from: CSV exports in a local directory (GCP-local, nise output).

nise writes ``{bucket}/{uuid}/YYYYMM_{uuid}_{start}:{end}.csv``: one file per export of a period, named
by its usage month. Data is processed per *invoice* month, and a row of invoice month M has usage in M
or earlier, so the month's manifest lists the files named for M and for M - 1 (plus any file whose name
carries no month); the conversion keeps the rows whose ``invoice.month`` is M. Of several exports of the
same period only the latest (file modification time) is read: a re-export replaces its partition. The
assembly id is derived from the chosen files' keys, sizes and modification times, so any re-export
gives a new one (Koku's ``partition_date|export_time`` idea).
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from koku_dagster.ingest.aws_source import LocalReportSource, Manifest, ReportFile
from koku_dagster.ingest.errors import ManifestError

_EXPORT_NAME = re.compile(r"^(\d{6})_[0-9a-fA-F-]{36}_(.+?)\.csv(?:\.gz)?$")
_REPORT_SUFFIXES = (".csv", ".csv.gz")


def file_months(month: date) -> set[str]:
    """The ``YYYYMM`` name prefixes whose files may hold rows of invoice month ``month``."""
    start = month.replace(day=1)
    return {f"{start:%Y%m}", f"{(start - timedelta(days=1)):%Y%m}"}


class LocalGcpExports(LocalReportSource):
    """GCP billing export CSVs anywhere below a local directory (same path-safety rules as AWS-local)."""

    def __init__(self, bucket_dir: Path) -> None:
        super().__init__(bucket_dir)

    def _export_files(self) -> list[Path]:
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [Path(dirpath) / f for f in filenames if f.endswith(_REPORT_SUFFIXES)]
        return sorted(found)

    def find_manifest(self, month: date) -> Manifest | None:
        """The latest export of every period that may hold rows of invoice month ``month``, or None."""
        wanted = file_months(month)
        latest: dict[tuple[str, str], tuple[int, str, Path]] = {}
        named_for_month = False
        for path in self._export_files():
            key = path.relative_to(self.root).as_posix()
            match = _EXPORT_NAME.match(path.name)
            if match and match.group(1) not in wanted:
                continue
            named_for_month |= match is None or match.group(1) == f"{month:%Y%m}"
            period = (match.group(1), match.group(2)) if match else ("", key)
            stamp = self._inside(path).stat().st_mtime_ns
            if period not in latest or (stamp, key) > latest[period][:2]:
                latest[period] = (stamp, key, path)
        if not named_for_month:
            return None
        chosen = sorted(latest.values(), key=lambda c: c[1])
        if len({p.name for _, _, p in chosen}) != len(chosen):
            raise ManifestError(f"two GCP export files for {month:%Y-%m} have the same name")
        signature = "|".join(f"{key}|{self.etag(key)}" for _, key, _ in chosen)
        return Manifest(
            assembly_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{month:%Y%m}|{signature}")),
            billing_period_start=month.replace(day=1),
            report_name="gcp-export",
            manifest_key=self.root.name,
            export_datetime=datetime.fromtimestamp(max(s for s, _, _ in chosen) / 1e9, UTC),
            files=tuple(ReportFile(key, self.path_of(key)) for _, key, _ in chosen),
        )
