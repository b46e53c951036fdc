"""Where a provider's reports are read from, by provider type."""

from __future__ import annotations

import shutil
from contextlib import closing
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from koku_dagster.ingest.aws_source import LocalReportSource, Manifest, ReportSource, S3ReportSource
from koku_dagster.ingest.azure_source import LocalAzureExports
from koku_dagster.ingest.gcp_source import LocalGcpExports
from koku_dagster.ingest.errors import IngestError
from koku_dagster.orchestration.provider_context import ProviderContext
from koku_dagster.sources.errors import ProviderValidationError
from koku_dagster.sources.validation import resolve_local_directory


#: Provider types whose reports this project can read (OpenShift pushes payloads instead; Azure
#: Blob Storage and BigQuery readers would be further :class:`ReportSource` implementations).
READABLE_TYPES = frozenset({"AWS", "AWS-local", "Azure-local", "GCP-local"})


def _local_dir(ctx: ProviderContext, key: str, local_roots: tuple[Path, ...]) -> Path:
    try:
        return resolve_local_directory(ctx.data_source.get(key, ""), local_roots)
    except ProviderValidationError as exc:
        raise IngestError(str(exc)) from None


#: Builds the S3 client of an AWS provider: (role ARN, external id, bucket region) -> boto3 S3 client.
S3ClientFactory = Callable[[str, str | None, str | None], Any]


def report_source_for(ctx: ProviderContext, local_roots: tuple[Path, ...], s3_client: S3ClientFactory) -> ReportSource:
    """The reader of a provider's cost reports; :class:`IngestError` when it cannot be built."""
    if ctx.type == "AWS-local":
        return LocalReportSource(_local_dir(ctx, "bucket", local_roots))
    if ctx.type == "Azure-local":
        return LocalAzureExports(_local_dir(ctx, "storage_account", local_roots), ctx.data_source.get("export_name"))
    if ctx.type == "GCP-local":
        return LocalGcpExports(_local_dir(ctx, "bucket", local_roots))
    if ctx.type == "AWS":
        client = s3_client(
            ctx.credentials.get("role_arn", ""), ctx.credentials.get("external_id"), ctx.data_source.get("bucket_region")
        )
        return S3ReportSource(client, ctx.data_source.get("bucket", ""))
    if ctx.type == "OCP":
        raise IngestError("OpenShift data arrives as uploaded payloads (ocp_upload_sensor); there are no reports to read")
    raise IngestError(f"reading {ctx.type} reports is not available (readable types: {', '.join(sorted(READABLE_TYPES))})")


class ArchivedReports:
    """The archived copies of one manifest's files (``data/csv/...``): what conversion reads."""

    def __init__(self, archive: Path, manifest: Manifest) -> None:
        self.archive = archive
        self._names = {f.key: f.name for f in manifest.files}

    def open_file(self, key: str) -> BinaryIO:
        return (self.archive / self._names[key]).open("rb")


def archive_file(source: ReportSource, key: str, target: Path) -> int:
    """Copy one report file to ``target`` (streaming); return its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(source.open_file(key)) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return target.stat().st_size
