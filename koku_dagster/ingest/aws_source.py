"""Where AWS Cost and Usage Reports come from: CUR manifests and their files, local or on S3.

A CUR month lives at ``{prefix}/{report_name}/{YYYYMMDD-YYYYMMDD}/{report_name}-Manifest.json``; the
manifest lists the month's report files (``reportKeys``, relative to the bucket).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from koku_dagster.ingest.errors import (
    IngestError,
    ManifestError,
    ReportFileMissingError,
    UnsafeReportPathError,
)

_RANGE_DIR = re.compile(r"^\d{8}-\d{8}$")
_MANIFEST_SUFFIX = "-Manifest.json"


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
    """A CUR manifest: one export (assembly) of one billing month."""

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
    """A place holding CUR reports (a local directory, an S3 bucket)."""

    def find_manifest(self, month: date) -> Manifest | None:
        """The manifest of the billing month starting at ``month`` (a 1st), or None if there is none."""
        ...

    def etag(self, key: str) -> str:
        """A tag that changes whenever the file's content changes."""
        ...


def billing_range(month: date) -> str:
    """The CUR folder name of a billing month: ``20261101-20261201``."""
    start = month.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return f"{start:%Y%m%d}-{end:%Y%m%d}"


def key_parts(key: str) -> list[str]:
    """The segments of a manifest key; refuses ``..``/``.`` segments, backslashes and NUL bytes."""
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in ("..", ".") or "\x00" in p or "\\" in p for p in parts):
        raise UnsafeReportPathError(f"refusing unsafe report key {key!r}")
    return parts


def parse_manifest(
    raw: bytes,
    *,
    month: date,
    report_name: str,
    manifest_key: str,
    export_datetime: datetime,
    locate: Callable[[str], Path | None],
) -> Manifest:
    """Validate a manifest document; ``locate`` maps each report key to its local path (or None)."""
    try:
        doc: Any = json.loads(raw)
        assembly_id = doc["assemblyId"]
        start = datetime.strptime(doc["billingPeriod"]["start"], "%Y%m%dT%H%M%S.%fZ").date()
        keys = doc.get("reportKeys") or []
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"manifest {manifest_key} is not a valid CUR manifest ({type(exc).__name__})") from None
    if not isinstance(assembly_id, str) or not assembly_id:
        raise ManifestError(f"manifest {manifest_key} has no assemblyId")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ManifestError(f"manifest {manifest_key} has a malformed reportKeys list")
    if start != month.replace(day=1):
        raise ManifestError(f"manifest {manifest_key} is for billing period {start}, not {month.replace(day=1)}")
    if len({key_parts(k)[-1] for k in keys}) != len(keys):
        raise ManifestError(f"manifest {manifest_key} lists two files with the same name")
    return Manifest(
        assembly_id=assembly_id,
        billing_period_start=start,
        report_name=report_name,
        manifest_key=manifest_key,
        export_datetime=export_datetime,
        files=tuple(ReportFile(key, locate(key)) for key in keys),
    )


class LocalReportSource:
    """CUR reports in a local directory laid out like the S3 bucket (AWS-local sources, nise output).

    The directory itself must already be an allowed bucket root; this class only keeps every file it
    opens inside it (no ``..`` keys, no symlinks leading out).
    """

    def __init__(self, bucket: Path, report_name: str | None = None) -> None:
        if not bucket.is_dir():
            raise IngestError(f"report directory does not exist: {bucket}")
        self.root = bucket.resolve()
        self.report_name = report_name

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            where = path.relative_to(self.root)
            raise UnsafeReportPathError(f"refusing {where}: it leads outside the report directory")
        return resolved

    def _manifest_candidates(self, month: date) -> tuple[list[Path], list[Path]]:
        """The month's manifests, and the month folders that hold files but no manifest."""
        wanted = billing_range(month)
        found: list[Path] = []
        orphans: list[Path] = []
        for dirpath, dirnames, _ in os.walk(self.root):
            here = Path(dirpath)
            for name in [d for d in dirnames if _RANGE_DIR.match(d)]:
                dirnames.remove(name)  # manifests sit directly in the range folder: no need to descend
                report = here.name
                if name == wanted and (self.report_name in (None, report)):
                    manifest = here / name / f"{report}{_MANIFEST_SUFFIX}"
                    if manifest.is_file():
                        found.append(manifest)
                    elif any(p.is_file() for p in (here / name).rglob("*")):
                        orphans.append(manifest)
        return sorted(found), sorted(orphans)

    def find_manifest(self, month: date) -> Manifest | None:
        """The month's CUR manifest; None when the month has no report folder yet.

        A month folder holding report files without its manifest is an error (:class:`ManifestError`).
        """
        candidates, orphans = self._manifest_candidates(month)
        if not candidates and orphans:
            missing = orphans[0].relative_to(self.root).as_posix()
            raise ManifestError(f"the {billing_range(month)} folder holds report files but no manifest ({missing})")
        if not candidates:
            return None
        if len(candidates) > 1:
            names = ", ".join(sorted({c.parent.parent.name for c in candidates}))
            raise ManifestError(f"several CUR reports for {billing_range(month)} ({names}); name the report to use")
        manifest = candidates[0]
        real = self._inside(manifest)
        return parse_manifest(
            real.read_bytes(),
            month=month,
            report_name=manifest.parent.parent.name,
            manifest_key=manifest.relative_to(self.root).as_posix(),
            export_datetime=datetime.fromtimestamp(real.stat().st_mtime, UTC),
            locate=self.path_of,
        )

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


class S3ReportSource:
    """CUR reports in an S3 bucket, read through a boto3 S3 client (with :func:`assume_role_credentials`)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", report_name: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.report_name = report_name

    def _manifest_keys(self, month: date) -> list[str]:
        """The month's manifest keys; :class:`ManifestError` when a month folder has files but no manifest."""
        wanted = billing_range(month)
        base = "/".join(p for p in (self.prefix, self.report_name or "") if p)
        in_month = re.compile(rf"(?:^|/)([^/]+)/{wanted}/")
        manifest = re.compile(rf"(?:^|/)([^/]+)/{wanted}/\1{re.escape(_MANIFEST_SUFFIX)}$")
        found: list[str] = []
        reports: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{base}/" if base else "")
        for page in pages:
            for key in (o["Key"] for o in page.get("Contents", [])):
                if (match := in_month.search(key)) and self.report_name in (None, match.group(1)):
                    reports.add(match.group(1))
                    if manifest.search(key):
                        found.append(key)
        if not found and reports:
            raise ManifestError(f"the {wanted} folder of {sorted(reports)[0]} holds report files but no manifest")
        if len(found) > 1:
            raise ManifestError(f"several CUR reports for {wanted} ({', '.join(found)}); name the report to use")
        return found

    def find_manifest(self, month: date) -> Manifest | None:
        """The month's CUR manifest; None when the month has no report folder yet."""
        for key in self._manifest_keys(month):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                continue
            return parse_manifest(
                obj["Body"].read(),
                month=month,
                report_name=key.rsplit("/", 1)[-1].removesuffix(_MANIFEST_SUFFIX),
                manifest_key=key,
                export_datetime=obj["LastModified"].astimezone(UTC),
                locate=lambda _key: None,
            )
        return None

    def _s3_key(self, key: str) -> str:
        return "/".join(key_parts(key))

    def open_file(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._s3_key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise ReportFileMissingError(key) from None

    def etag(self, key: str) -> str:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._s3_key(key))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ReportFileMissingError(key) from None
            raise
        return str(head["ETag"]).strip('"')


def assume_role_credentials(
    role_arn: str,
    external_id: str | None = None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, str]:
    """Temporary credentials of ``role_arn`` (STS AssumeRole, with the external id when one is set),
    as the keyword arguments of an S3 client."""
    import boto3

    params: dict[str, str] = {"RoleArn": role_arn, "RoleSessionName": "KokuDagsterDownloader"}
    if external_id:
        params["ExternalId"] = external_id
    session = boto3.session.Session()  # credentials as the environment has them now
    creds = session.client("sts", region_name=region, endpoint_url=endpoint_url).assume_role(**params)["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
