"""Typed ingestion errors. Messages name report keys and columns, never credentials or bucket URLs."""

from __future__ import annotations


class IngestError(Exception):
    """A cost report could not be ingested."""


class UnsafeReportPathError(IngestError):
    """A manifest key or a file would lead outside the report bucket."""


class ManifestError(IngestError):
    """A manifest is unreadable or lacks a required field."""


class ReportFileMissingError(IngestError):
    """A file listed in a manifest does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"report file listed in the manifest is missing: {key}")
        self.key = key


class ReportFormatError(IngestError):
    """A report file is not a usable CSV (wrong extension, missing required columns)."""


class ReportTooLargeError(IngestError):
    """A report file, manifest or bucket listing exceeds its size or count limit."""


class CorruptReportError(IngestError):
    """A report file is damaged: truncated compression, malformed CSV rows."""


class PayloadError(IngestError):
    """An OpenShift payload could not be fetched or unpacked."""


class PayloadRefusedError(PayloadError):
    """A payload URL has a refused scheme or points outside the allowed file roots."""


class PayloadDownloadError(PayloadError):
    """A payload download failed (network error, HTTP error status)."""


class PayloadTooLargeError(PayloadError):
    """A payload, its manifest or its unpacked content exceeds a size or member-count limit."""


class UnsafePayloadError(PayloadError):
    """A tarball member would escape the extraction folder or is not a regular file or folder."""


class CorruptPayloadError(PayloadError):
    """A payload is not a readable tar.gz archive."""
