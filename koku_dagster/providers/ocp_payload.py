"""OpenShift payloads: manifest and safe extraction (the download is :mod:`koku_dagster.uploads.download`).

A payload is a ``.tar.gz`` holding ``manifest.json`` and the CSV files it lists, at the top level (as
the Cost Management Metrics Operator and nise's ``--insights-upload`` output). The manifest is read
before anything is extracted; extraction, one streaming pass that decompresses the archive once,
writes only the listed regular files and refuses the whole archive (removing what it wrote) when
any member could escape the destination (absolute paths, ``..``, links, devices). Header
extensions (GNU long names, PAX records) are size-checked before :mod:`tarfile` reads them whole,
so a small gzip declaring a huge header cannot exhaust memory.
"""

from __future__ import annotations

import calendar
import json
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from koku_dagster.reports.errors import (
    CorruptPayloadError,
    ManifestError,
    PayloadTooLargeError,
    ReportFileMissingError,
    UnsafePayloadError,
)

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 10 << 20
MAX_MEMBERS = 1_000
#: Largest unpacked content of a payload (every member counts).
MAX_UNPACKED_BYTES = 4 << 30
CHUNK_BYTES = 1 << 20
#: Largest GNU long-name / long-link header (a path) and largest PAX header block accepted.
MAX_LONG_NAME_BYTES = 4096
MAX_PAX_BYTES = 64 << 10
#: Months a manifest's ``start`` .. ``end`` may span (an operator payload covers one, at a month end two).
MAX_MANIFEST_MONTHS = 3
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, RecursionError)
#: ``date`` as a type; inside ``PayloadManifest`` the name is its ``date`` field.
_Date = date


@dataclass(frozen=True)
class PayloadManifest:
    """The fields of an operator's ``manifest.json`` that ingestion uses."""

    uuid: str
    cluster_id: str
    date: datetime
    files: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None
    version: str | None = None
    certified: bool = False
    daily_reports: bool = False
    resource_optimization_files: tuple[str, ...] = ()
    cr_status: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def months(self) -> tuple[_Date, ...]:
        """First days of the months from ``start`` to ``end`` (of ``date`` when they are absent)."""
        first = (self.start or self.date).date().replace(day=1)
        last = (self.end or self.start or self.date).date().replace(day=1)
        months = [first]
        while months[-1] < last:
            m = months[-1]
            months.append(date(m.year + m.month // 12, m.month % 12 + 1, 1))
        return tuple(months)

    def metadata(self) -> dict[str, Any]:
        """Flat, JSON-friendly figures (Dagster metadata)."""
        return {
            "manifest_uuid": self.uuid,
            "cluster_id": self.cluster_id,
            "date": self.date.isoformat(),
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "files": len(self.files),
            "version": self.version,
            "daily_reports": self.daily_reports,
        }


def _timestamp(value: Any, name: str, *, required: bool) -> datetime | None:
    """An ISO 8601 timestamp (or the operator's ``... +0000 UTC`` form) in UTC; naive ones are taken as UTC."""
    if value in (None, ""):
        if required:
            raise ManifestError(f"{MANIFEST_NAME}: {name} is missing")
        return None
    try:
        parsed = datetime.fromisoformat(str(value).removesuffix(" UTC").replace("Z", "+00:00"))
    except ValueError:
        raise ManifestError(f"{MANIFEST_NAME}: {name} is not a timestamp: {str(value)[:40]!r}") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _names(value: Any, name: str) -> tuple[str, ...]:
    """A list of plain file names (no folders, nothing hidden)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{MANIFEST_NAME}: {name} is not a list of file names")
    for v in value:
        if not _FILE_NAME.match(v):
            raise UnsafePayloadError(f"{MANIFEST_NAME}: {name} holds a name that is not a plain file name: {v[:80]!r}")
    return tuple(dict.fromkeys(value))


def _check_span(start: datetime | None, end: datetime | None) -> None:
    """``start`` .. ``end`` must be in order and span at most :data:`MAX_MANIFEST_MONTHS` months."""
    if start is None or end is None:
        return
    if end < start:
        raise ManifestError(f"{MANIFEST_NAME}: end is before start")
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if months > MAX_MANIFEST_MONTHS:
        raise ManifestError(f"{MANIFEST_NAME}: start .. end spans {months} months; at most {MAX_MANIFEST_MONTHS}")


def parse_manifest(doc: Any) -> PayloadManifest:
    """Validate a decoded ``manifest.json``.

    Koku's rule: when ``start`` and ``end`` fall in different months and ``end`` is on the 1st (the
    operator's exclusive month end), ``end`` becomes the last day of ``start``'s month.
    """
    if not isinstance(doc, dict):
        raise ManifestError(f"{MANIFEST_NAME}: not a JSON object")
    for key in ("uuid", "cluster_id"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise ManifestError(f"{MANIFEST_NAME}: {key} is missing")
    if not _IDENTIFIER.match(doc["uuid"].strip()):  # it names files and folders
        raise UnsafePayloadError(f"{MANIFEST_NAME}: uuid is not a plain identifier: {doc['uuid'][:80]!r}")
    start = _timestamp(doc.get("start"), "start", required=False)
    end = _timestamp(doc.get("end"), "end", required=False)
    if start and end and (start.year, start.month) != (end.year, end.month) and end.day == 1:
        end = end.replace(year=start.year, month=start.month, day=calendar.monthrange(start.year, start.month)[1])
    _check_span(start, end)
    cr_status = doc.get("cr_status")
    return PayloadManifest(
        uuid=doc["uuid"].strip(),
        cluster_id=doc["cluster_id"].strip(),
        date=_timestamp(doc.get("date"), "date", required=True),  # type: ignore[arg-type]
        files=_names(doc.get("files"), "files"),
        start=start,
        end=end,
        version=str(doc["version"]) if doc.get("version") is not None else None,
        certified=bool(doc.get("certified", False)),
        daily_reports=bool(doc.get("daily_reports", False)),
        resource_optimization_files=_names(doc.get("resource_optimization_files"), "resource_optimization_files"),
        cr_status=cr_status if isinstance(cr_status, dict) else {},
    )


def _member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative name; refuses absolute paths, ``..`` and non-file types."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member.name):
        raise UnsafePayloadError(f"payload member has an absolute path: {member.name[:120]!r}")
    if ".." in path.parts or "\\" in member.name:
        raise UnsafePayloadError(f"payload member leaves the extraction folder: {member.name[:120]!r}")
    if member.issym() or member.islnk():
        raise UnsafePayloadError(f"payload member is a link: {member.name[:120]!r}")
    if not (member.isreg() or member.isdir()):
        raise UnsafePayloadError(f"payload member is not a regular file: {member.name[:120]!r}")
    return "/".join(p for p in path.parts if p != ".")


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses a GNU long-name or PAX header larger than a path needs before :mod:`tarfile` reads it
    into memory (it reads such headers whole, whatever size they declare)."""

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_LONG_NAME_BYTES:
            raise PayloadTooLargeError(f"payload has a long-name header of {self.size} bytes")
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_PAX_BYTES:
            raise PayloadTooLargeError(f"payload has a PAX header of {self.size} bytes")
        return super()._proc_pax(tarfile)  # type: ignore[misc]


def _open(tar_path: Path) -> tarfile.TarFile:
    """The archive as a stream: members are read in order and the data is decompressed once."""
    try:
        return tarfile.open(tar_path, mode="r|*", tarinfo=_BoundedTarInfo)
    except _TAR_ERRORS as exc:
        raise CorruptPayloadError(f"{tar_path.name}: not a readable tar archive ({exc})") from None


def _members(
    tar: tarfile.TarFile, tar_path: Path, max_members: int, max_bytes: int
) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Each member with its checked name, in archive order (see :func:`_member_name`).

    Every member's size counts against ``max_bytes``, listed or not: reading past a member costs
    as much decompression as extracting it.
    """
    seen: set[str] = set()
    count = total = 0
    try:
        for member in tar:
            count += 1
            total += member.size
            if count > max_members:
                raise PayloadTooLargeError(f"{tar_path.name}: more than {max_members} members")
            if total > max_bytes:
                raise PayloadTooLargeError(f"{tar_path.name}: members exceed {max_bytes} bytes unpacked")
            name = _member_name(member)
            if member.isreg():
                if name in seen:
                    raise UnsafePayloadError(f"{tar_path.name}: member {name!r} appears twice")
                seen.add(name)
            yield name, member
    except _TAR_ERRORS as exc:
        raise CorruptPayloadError(f"{tar_path.name}: damaged tar archive ({exc})") from None


def _copy(source: IO[bytes], target: IO[bytes], limit: int, what: str) -> int:
    """Copy at most ``limit`` bytes; more raises :class:`PayloadTooLargeError`."""
    copied = 0
    while chunk := source.read(CHUNK_BYTES):
        copied += len(chunk)
        if copied > limit:
            raise PayloadTooLargeError(f"{what} exceeds {limit} bytes")
        target.write(chunk)
    return copied


def read_manifest(
    tar_path: Path, *, max_members: int = MAX_MEMBERS, max_total_bytes: int = MAX_UNPACKED_BYTES
) -> PayloadManifest:
    """Read and validate ``manifest.json`` without extracting anything.

    The archive is read only up to the manifest (operators and nise put it first); the members
    before it are checked, every member is checked again by :func:`extract_payload`.
    """
    raw: bytes | None = None
    with _open(tar_path) as tar:
        for name, member in _members(tar, tar_path, max_members, max_total_bytes):
            if name != MANIFEST_NAME or not member.isreg():
                continue
            if member.size > MAX_MANIFEST_BYTES:
                raise PayloadTooLargeError(f"{tar_path.name}: {MANIFEST_NAME} exceeds {MAX_MANIFEST_BYTES} bytes")
            try:
                raw = tar.extractfile(member).read(MAX_MANIFEST_BYTES + 1)  # type: ignore[union-attr]
            except _TAR_ERRORS as exc:
                raise CorruptPayloadError(f"{tar_path.name}: damaged {MANIFEST_NAME} ({exc})") from None
            break
    if raw is None:
        raise ManifestError(f"{tar_path.name}: no {MANIFEST_NAME} at the top level")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{tar_path.name}: {MANIFEST_NAME} is not JSON ({exc})") from None
    return parse_manifest(doc)


def extract_payload(
    tar_path: Path,
    dest: Path,
    manifest: PayloadManifest,
    *,
    max_total_bytes: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_MEMBERS,
) -> dict[str, Path]:
    """Extract the manifest's files (top-level regular files) into ``dest``; return name -> path.

    One pass over the archive: every member is checked, and the listed files are written as new
    regular files (never over existing ones), at most ``max_total_bytes`` in all. If any member is
    unsafe, the archive is damaged or a listed file is missing (:class:`ReportFileMissingError`),
    everything written is removed again: the archive is refused as a whole.
    """
    wanted = set(manifest.files)
    clashes = [name for name in manifest.files if (dest / name).exists()]
    if clashes:
        raise FileExistsError(f"extraction folder already holds {clashes[0]}")
    created = not dest.exists()
    extracted: dict[str, Path] = {}
    budget = max_total_bytes
    try:
        with _open(tar_path) as tar:
            for name, member in _members(tar, tar_path, max_members, max_total_bytes):
                if name not in wanted or not member.isreg():
                    continue
                if member.size > budget:
                    raise PayloadTooLargeError(f"{tar_path.name}: listed files exceed {max_total_bytes} bytes")
                dest.mkdir(parents=True, exist_ok=True)
                target = dest / name
                try:
                    with tar.extractfile(member) as src, target.open("xb") as out:  # type: ignore[union-attr]
                        extracted[name] = target
                        budget -= _copy(src, out, budget, f"{tar_path.name}: unpacked content")
                except _TAR_ERRORS as exc:
                    raise CorruptPayloadError(f"{tar_path.name}: damaged member {name!r} ({exc})") from None
        missing = [name for name in manifest.files if name not in extracted]
        if missing:
            raise ReportFileMissingError(missing[0])
    except BaseException:
        for path in extracted.values():
            path.unlink(missing_ok=True)
        if created and dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return {name: extracted[name] for name in manifest.files}
