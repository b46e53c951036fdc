"""Where a provider's reports are read from, by provider type."""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from koku_dagster.ingest.aws_source import LocalReportSource, Manifest, ReportSource, S3ReportSource, assume_role_s3_client
from koku_dagster.ingest.errors import IngestError
from koku_dagster.orchestration.provider_context import ProviderContext
from koku_dagster.sources.errors import ProviderValidationError
from koku_dagster.sources.validation import resolve_local_directory


def report_source_for(ctx: ProviderContext, local_roots: tuple[Path, ...], endpoint_url: str | None) -> ReportSource:
    """The reader of a provider's cost reports; :class:`IngestError` when it cannot be built."""
    if ctx.type == "AWS-local":
        try:
            return LocalReportSource(resolve_local_directory(ctx.data_source.get("bucket", ""), local_roots))
        except ProviderValidationError as exc:
            raise IngestError(str(exc)) from None
    if ctx.type == "AWS":
        client = assume_role_s3_client(
            ctx.credentials.get("role_arn", ""),
            ctx.credentials.get("external_id"),
            region=ctx.data_source.get("bucket_region"),
            endpoint_url=endpoint_url,
        )
        return S3ReportSource(client, ctx.data_source.get("bucket", ""))
    raise IngestError(f"ingestion of {ctx.type} providers is not available yet")


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
