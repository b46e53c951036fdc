"""Where Azure cost exports come from: export folders in a local directory (Azure-local, nise output).

An export month lives at ``{export_name}/{YYYYMMDD-YYYYMMDD}/`` (month start to month end, as Azure and
nise write it; a range ending on the next month's 1st is accepted too). If the folder holds a JSON
manifest (``blobs[].blobName``) its blobs are the month's files; otherwise the latest CSV is. The
assembly id is the UUID in the manifest's or file's key. Manifests and files are the AWS dataclasses,
so every provider type is handled alike downstream; a Blob Storage reader only has to implement
:class:`~koku_dagster.ingest.aws_source.ReportSource` as well.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from koku_dagster.ingest.aws_source import LocalReportSource, Manifest, ReportFile, key_parts
from koku_dagster.ingest.errors import ManifestError

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REPORT_SUFFIXES = (".csv", ".csv.gz")


def export_ranges(month: date) -> tuple[str, ...]:
    """The folder names an export month may have: ``20261101-20261130`` and ``20261101-20261201``."""
    start = month.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return f"{start:%Y%m%d}-{following - timedelta(days=1):%Y%m%d}", f"{start:%Y%m%d}-{following:%Y%m%d}"


def uuid_in(key: str) -> str | None:
    """The last UUID in a key (lowercase), or None."""
    found = _UUID.findall(key)
    return found[-1].lower() if found else None


def combined_id(ids: list[str]) -> str:
    """One assembly id for several: the id itself when there is one, else a UUID derived from all."""
    unique = sorted(set(ids))
    return unique[0] if len(unique) == 1 else str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(unique)))


class LocalAzureExports(LocalReportSource):
    """Azure cost exports in a local directory: ``{export_name}/{YYYYMMDD-YYYYMMDD}/...``.

    Without ``export_name`` every export folder is read and their files form one manifest. File keys
    are relative to the directory; opening and etags are those of the AWS local source (same
    path-safety rules: no ``..`` keys, no symlinks leading out).
    """

    def __init__(self, storage_dir: Path, export_name: str | None = None) -> None:
        if export_name is not None and len(key_parts(export_name)) != 1:
            raise ManifestError(f"export name must be one folder name: {export_name!r}")
        super().__init__(storage_dir, export_name)

    def _export_dirs(self) -> list[Path]:
        if self.report_name:
            return [self.root / self.report_name]
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _month_files(self, folder: Path) -> tuple[str, list[str], datetime] | None:
        """(assembly id, file keys, export time) of one export's month folder, or None if it has no report."""
        self._inside(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
        manifests = [p for p in files if p.suffix == ".json"]
        if manifests:
            latest = max(manifests, key=lambda p: (self._inside(p).stat().st_mtime_ns, p.name))
            return self._from_manifest(latest)
        reports = [p for p in files if p.name.endswith(_REPORT_SUFFIXES)]
        if not reports:
            return None
        latest = max(reports, key=lambda p: (self._inside(p).stat().st_mtime_ns, p.name))
        key = latest.relative_to(self.root).as_posix()
        assembly_id = uuid_in(latest.name) or uuid_in(key)
        if assembly_id is None:
            raise ManifestError(f"no assembly id (UUID) in the report name {key}")
        return assembly_id, [key], datetime.fromtimestamp(self._inside(latest).stat().st_mtime, UTC)

    def _from_manifest(self, path: Path) -> tuple[str, list[str], datetime]:
        key = path.relative_to(self.root).as_posix()
        try:
            doc: Any = json.loads(self._inside(path).read_bytes())
            names = [b["blobName"] for b in doc["blobs"]]
            run_id = (doc.get("runInfo") or {}).get("runId")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"manifest {key} is not a valid Azure export manifest ({type(exc).__name__})") from None
        if not names or not all(isinstance(n, str) for n in names):
            raise ManifestError(f"manifest {key} lists no report blobs")
        assembly_id = uuid_in(key) or (uuid_in(run_id) if isinstance(run_id, str) else None)
        if assembly_id is None:
            raise ManifestError(f"no assembly id (UUID) in the manifest {key}")
        return assembly_id, names, datetime.fromtimestamp(self._inside(path).stat().st_mtime, UTC)

    def find_manifest(self, month: date) -> Manifest | None:
        """The files of the month's export(s), or None when no export has a folder for the month."""
        found: list[tuple[str, str, list[str], datetime]] = []
        for export in self._export_dirs():
            for name in export_ranges(month):
                folder = export / name
                if folder.is_dir() and (files := self._month_files(folder)):
                    found.append((export.name, *files))
                    break
        if not found:
            return None
        keys = [k for _, _, ks, _ in found for k in ks]
        if len({key_parts(k)[-1] for k in keys}) != len(keys):
            raise ManifestError(f"the exports for {month:%Y-%m} list two files with the same name")
        return Manifest(
            assembly_id=combined_id([a for _, a, _, _ in found]),
            billing_period_start=month.replace(day=1),
            report_name=",".join(e for e, _, _, _ in found),
            manifest_key=",".join(sorted({k.rsplit("/", 1)[0] for k in keys})),
            export_datetime=max(t for _, _, _, t in found),
            files=tuple(ReportFile(k, self.path_of(k)) for k in keys),
        )
