"""AWS and AWS-local: Cost and Usage Reports (CUR) in an S3 bucket or a local directory.

A CUR month lives at ``{prefix}/{report_name}/{YYYYMMDD-YYYYMMDD}/{report_name}-Manifest.json``; the
manifest lists the month's report files (``reportKeys``, relative to the bucket). Steps: the manifest
-> line items (:class:`~koku_dagster.providers.aws_cur.AwsTable`) -> daily line items ->
``reporting_awscostentrylineitem_daily_summary`` -> :func:`month_totals` for the checks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from koku_dagster.providers.aws_cur import AwsTable
from koku_dagster.providers.base import (
    CloudType,
    CredentialFetch,
    CredentialInputs,
    CredentialsError,
    ProviderContext,
    ReportAccess,
    SettingsError,
    Unreachable,
)
from koku_dagster.reports.csv_parquet import report_stem
from koku_dagster.reports.errors import ManifestError, ReportFileMissingError, ReportTooLargeError
from koku_dagster.reports.local import LocalReports
from koku_dagster.reports.model import Manifest, ReportFile, ReportSource, key_parts
from koku_dagster.reports.month_tables import column_sums, rows_outside_month
from koku_dagster.reports.paths import daily_dir, parquet_files, summary_dir
from koku_dagster.reports.results import CostTotals

_RANGE_DIR = re.compile(r"^\d{8}-\d{8}$")
_MANIFEST_SUFFIX = "-Manifest.json"
#: Largest CUR manifest read (a real one lists a few hundred keys: well under 1 MiB).
MAX_MANIFEST_BYTES = 16 << 20
#: Objects listed under a report prefix before the listing is given up (a bucket of other data).
MAX_LISTED_KEYS = 100_000
SUMMARY_TABLE = "reporting_awscostentrylineitem_daily_summary"


def billing_range(month: date) -> str:
    """The CUR folder name of a billing month: ``20261101-20261201``."""
    start = month.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return f"{start:%Y%m%d}-{end:%Y%m%d}"


def read_manifest_bytes(stream: BinaryIO, manifest_key: str) -> bytes:
    """At most :data:`MAX_MANIFEST_BYTES` of a manifest; a larger one raises :class:`ReportTooLargeError`."""
    raw = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReportTooLargeError(f"manifest {manifest_key} exceeds {MAX_MANIFEST_BYTES} bytes")
    return raw


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


class LocalCurReports(LocalReports):
    """CUR reports in a local directory laid out like the S3 bucket (AWS-local sources, nise output)."""

    def __init__(self, bucket: Path, report_name: str | None = None) -> None:
        super().__init__(bucket)
        self.report_name = report_name

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
        manifest_key = manifest.relative_to(self.root).as_posix()
        with real.open("rb") as stream:
            raw = read_manifest_bytes(stream, manifest_key)
        return parse_manifest(
            raw,
            month=month,
            report_name=manifest.parent.parent.name,
            manifest_key=manifest_key,
            export_datetime=datetime.fromtimestamp(real.stat().st_mtime, UTC),
            locate=self.path_of,
        )


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
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{base}/" if base else ""
        )
        listed = 0
        for page in pages:
            contents = page.get("Contents", [])
            listed += len(contents)
            if listed > MAX_LISTED_KEYS:
                raise ReportTooLargeError(
                    f"more than {MAX_LISTED_KEYS} objects under the report prefix; name the report path exactly"
                )
            for key in (o["Key"] for o in contents):
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
            if int(obj.get("ContentLength") or 0) > MAX_MANIFEST_BYTES:
                raise ReportTooLargeError(f"manifest {key} exceeds {MAX_MANIFEST_BYTES} bytes")
            return parse_manifest(
                read_manifest_bytes(obj["Body"], key),
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
    config: Any = None,
) -> dict[str, str]:
    """Temporary credentials of ``role_arn`` (STS AssumeRole, with the external id when one is set),
    as the keyword arguments of an S3 client. ``config``: a botocore ``Config`` (timeouts, retries)."""
    import boto3

    params: dict[str, str] = {"RoleArn": role_arn, "RoleSessionName": "KokuDagsterDownloader"}
    if external_id not in (None, ""):
        params["ExternalId"] = str(external_id)  # a numeric id from Platform Sources is still an id
    session = boto3.session.Session()  # credentials as the environment has them now
    sts = session.client("sts", region_name=region, endpoint_url=endpoint_url, config=config)
    creds = sts.assume_role(**params)["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


# --- reachability (Koku's cost_usage_source_ready for AWS) ---------------------------------------

ROLE_MESSAGE = (
    "The role ARN was entered incorrectly or the role cannot be assumed: check its trust policy and the external ID."
)
BUCKET_MESSAGE = (
    "The S3 bucket was entered incorrectly or the role cannot read it: check the bucket name and the role's policy."
)
REPORTS_DENIED_MESSAGE = (
    "The role cannot list the Cost and Usage Reports: its policy must allow cur:DescribeReportDefinitions."
)
NO_REPORT_MESSAGE = "No Cost and Usage Report is delivered to this S3 bucket: create one with resource IDs included."
COMPRESSION_MESSAGE = (
    "The Cost and Usage Report of this bucket is not compressed as expected: "
    "AWS Cost and Usage Reports use GZIP compression format."
)
RESOURCES_MESSAGE = "The Cost and Usage Report of this bucket does not include resource IDs: enable them in the report."
AWS_UNREACHABLE_MESSAGE = "AWS could not be reached to check this source. It will try again."
#: Bounded waits of every AWS call of the check (seconds; attempts including the first).
_CHECK_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 15,
    "retries": {"total_max_attempts": 2, "mode": "standard"},
}
#: The CUR API answers in us-east-1 only (also the region of STS and S3 when the source names none); at most
#: this many pages of report definitions (5 per page).
_CUR_REGION = "us-east-1"
_MAX_REPORT_PAGES = 40


@contextmanager
def _failing_as(message: str) -> Iterator[None]:
    """Any AWS error of the block becomes :class:`Unreachable` with ``message`` (network faults with their
    own); the raw error stays the exception's cause, for the log."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as AwsConnectionError

    try:
        yield
    except (AwsConnectionError, HTTPClientError) as exc:
        raise Unreachable(AWS_UNREACHABLE_MESSAGE) from exc
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        raise Unreachable(message) from exc


def _report_definitions(cur: Any) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {}
    for _ in range(_MAX_REPORT_PAGES):
        page = cur.describe_report_definitions(**params)
        yield from page.get("ReportDefinitions", [])
        if not page.get("NextToken"):
            return
        params = {"NextToken": page["NextToken"]}


def cur_report_problem(reports: Iterable[dict[str, Any]], bucket: str) -> str | None:
    """Koku's rules for the bucket's CUR definitions: one delivers to the bucket, GZIP or plain, with
    resource IDs. None when one does; else the fixed message of what is missing."""
    delivered = [r for r in reports if r.get("S3Bucket") == bucket]
    if not delivered:
        return NO_REPORT_MESSAGE
    compressed = [r for r in delivered if str(r.get("Compression", "")).upper() in ("GZIP", "PLAIN")]
    if not compressed:
        return COMPRESSION_MESSAGE
    if not any("RESOURCES" in (r.get("AdditionalSchemaElements") or []) for r in compressed):
        return RESOURCES_MESSAGE
    return None


def check_s3_source(credentials: dict[str, Any], data_source: dict[str, Any]) -> None:
    """Assume the role (with the external id), ``head_bucket``, and find the bucket's CUR definition
    (``storage_only`` sources: no CUR). :class:`Unreachable` with a fixed message at the first failure.

    Endpoints as boto3 finds them (``AWS_ENDPOINT_URL``, or per service, e.g.
    ``AWS_ENDPOINT_URL_COST_AND_USAGE_REPORT_SERVICE``)."""
    import boto3
    from botocore.config import Config

    role_arn, bucket = credentials.get("role_arn"), data_source.get("bucket")
    region = data_source.get("bucket_region") or _CUR_REGION  # S3 redirects to the bucket's own region
    if not isinstance(role_arn, str) or not role_arn:
        raise Unreachable(ROLE_MESSAGE)
    if not isinstance(bucket, str) or not bucket:
        raise Unreachable(BUCKET_MESSAGE)
    config = Config(**_CHECK_TIMEOUTS)
    with _failing_as(ROLE_MESSAGE):
        keys = assume_role_credentials(role_arn, credentials.get("external_id"), region=region, config=config)
    session = boto3.session.Session(**keys)
    with _failing_as(BUCKET_MESSAGE):
        session.client("s3", region_name=region, config=config).head_bucket(Bucket=bucket)
    if data_source.get("storage_only"):
        return
    with _failing_as(REPORTS_DENIED_MESSAGE):
        reports = list(_report_definitions(session.client("cur", region_name=_CUR_REGION, config=config)))
    problem = cur_report_problem(reports, bucket)
    if problem is not None:
        raise Unreachable(problem)


@dataclass(frozen=True)
class MonthTotals(CostTotals):
    """Row counts and cost sums of every step of one provider month, for asset checks."""

    HEADLINE = {"unblended_cost": "summary_unblended_cost", "blended_cost": "summary_blended_cost"}
    MATCHED = (
        ("summary_unblended_cost", "raw_unblended_cost"),
        ("daily_unblended_cost", "raw_unblended_cost"),
        ("summary_blended_cost", "raw_blended_cost"),
    )

    source_rows: int
    line_item_rows: int
    daily_rows: int
    summary_rows: int
    rows_outside_month: int
    #: Summary rows whose ``usage_start`` is not in the billing month (must be 0).
    summary_rows_outside_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_unblended_cost: Decimal
    raw_blended_cost: Decimal
    daily_unblended_cost: Decimal
    summary_unblended_cost: Decimal
    summary_blended_cost: Decimal


@dataclass(frozen=True)
class AwsType(CloudType):
    """AWS (S3 bucket, role assumed with STS) and AWS-local (a directory under the local bucket roots)."""

    family = "AWS"
    cost_authtype = "arn"
    credential_fetch = CredentialFetch(password="without_username")
    summary_table = SUMMARY_TABLE
    TABLE = AwsTable
    DAILY_SQL = "aws_line_items_daily"

    @staticmethod
    def stem(name: str) -> str:
        return report_stem(name)

    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        role_arn = inputs.username or inputs.password
        if not role_arn:
            raise CredentialsError("Unable to find the role ARN of the source")
        return {"role_arn": role_arn, "external_id": inputs.auth_extra.get("external_id")}

    def check_settings(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> None:
        if not credentials.get("role_arn"):
            raise SettingsError("The role ARN is missing.")
        if not data_source.get("bucket"):
            raise SettingsError("The S3 bucket is missing.")

    def check_reachable(self, ctx: ProviderContext, access: ReportAccess) -> None:
        if self.local_directory_key is not None:
            super().check_reachable(ctx, access)
            return
        check_s3_source(ctx.credentials, ctx.data_source)

    def report_source(self, ctx: ProviderContext, access: ReportAccess) -> ReportSource:
        if self.local_directory_key is not None:
            return LocalCurReports(self.local_directory(ctx, access.local_roots))
        client = access.s3_client(
            ctx.credentials.get("role_arn", ""),
            ctx.credentials.get("external_id"),
            ctx.data_source.get("bucket_region"),
        )
        return S3ReportSource(client, ctx.data_source.get("bucket", ""))

    def month_totals(self, *, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
        """Counts and cost sums of the line-item, daily and summary partitions of one provider month.

        The raw costs are the exact sums of the report's text taken while converting (kept in each
        line-item file's footer); the others are summed from the written Parquet.
        """
        rows, stats = self.line_item_stats(schema=schema, provider_uuid=provider_uuid, month=month, out_root=out_root)
        daily_rows, (daily_unblended,) = column_sums(
            parquet_files(daily_dir(out_root, schema, self.family, provider_uuid, month)), ["lineitem_unblendedcost"]
        )
        summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
        summary_rows, (summary_unblended, summary_blended) = column_sums(
            summary_files, ["unblended_cost", "blended_cost"]
        )
        return MonthTotals(
            source_rows=stats.source_rows,
            line_item_rows=rows,
            daily_rows=daily_rows,
            summary_rows=summary_rows,
            rows_outside_month=stats.rows_outside_month,
            summary_rows_outside_month=rows_outside_month(summary_files, "usage_start", month),
            rows_without_usage_start=stats.rows_without_usage_start,
            uncast_cells=stats.uncast_cells,
            raw_unblended_cost=stats.raw("unblended_cost"),
            raw_blended_cost=stats.raw("blended_cost"),
            daily_unblended_cost=daily_unblended,
            summary_unblended_cost=summary_unblended,
            summary_blended_cost=summary_blended,
        )


_BILLING_OPTIONAL = ("bucket_region", "storage_only", "metered")
AWS = AwsType("AWS", "amazon", ("bucket",), _BILLING_OPTIONAL, polled=True)
AWS_LOCAL = AwsType(
    "AWS-local", "amazon-local", ("bucket",), _BILLING_OPTIONAL, local_directory_key="bucket", polled=True
)
TYPES = (AWS, AWS_LOCAL)
