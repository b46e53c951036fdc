"""GCP and GCP-local: billing exports, processed per *invoice* month.

nise writes ``{bucket}/{uuid}/YYYYMM_{uuid}_{start}:{end}.csv``: one file per export of a period, named
by its usage month. Data is processed per invoice month, and a row of invoice month M has usage in M
or earlier, so the month's manifest lists the files named for M and for M - 1 (plus any file whose name
carries no month); the conversion keeps the rows whose ``invoice.month`` is M. Of several exports of the
same period only the latest (file modification time) is read: a re-export replaces its partition. The
assembly id is derived from the chosen files' keys, sizes and modification times, so any re-export
gives a new one (Koku's ``partition_date|export_time`` idea). Every partition is filed under the
invoice month (its usage days may lie before it). ``GCP`` reads the BigQuery billing export table
instead (:mod:`koku_dagster.providers.gcp_bigquery`), written out as CSV text with the same columns.
"""

from __future__ import annotations

import ast
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from koku_dagster.providers import gcp_bigquery
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
from koku_dagster.reports.csv_parquet import TIMESTAMP_TYPE, CsvTable
from koku_dagster.reports.errors import IngestError, ManifestError
from koku_dagster.reports.local import LocalReports
from koku_dagster.reports.model import Manifest, ReportFile, ReportSource
from koku_dagster.reports.month_tables import column_sums, rows_not_equal
from koku_dagster.reports.paths import daily_dir, parquet_files, summary_dir
from koku_dagster.reports.results import CostTotals

SUMMARY_TABLE = "reporting_gcpcostentrylineitem_daily_summary"
_EXPORT_NAME = re.compile(r"^(\d{6})_[0-9a-fA-F-]{36}_(.+?)\.csv(?:\.gz)?$")
_REPORT_SUFFIXES = (".csv", ".csv.gz")
USAGE_START = "usage_start_time"
COST = "cost"
CREDIT_AMOUNT = "credit_amount"
CREDITS = "credits"
INVOICE_MONTH = "invoice_month"
STRING_COLUMNS = (
    "billing_account_id", "service_id", "service_description", "sku_id", "sku_description", "project_id",
    "project_name", "project_ancestry_numbers", "location_location", "location_country", "location_region",
    "location_zone", "currency", "usage_unit", "usage_pricing_unit", INVOICE_MONTH, "cost_type",
    "resource_name", "resource_global_name", CREDITS,
)  # fmt: skip
TIMESTAMP_COLUMNS = (USAGE_START, "usage_end_time", "export_time")
AMOUNT_COLUMNS = (COST, "currency_conversion_rate", "usage_amount", "usage_amount_in_pricing_units")
LABEL_COLUMNS = ("labels", "system_labels", "project_labels")
LINE_ITEM_SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in STRING_COLUMNS]
    + [pa.field(c, TIMESTAMP_TYPE) for c in TIMESTAMP_COLUMNS]
    + [pa.field("partition_date", pa.date32())]
    + [pa.field(c, pa.float64()) for c in (*AMOUNT_COLUMNS, CREDIT_AMOUNT)]
    + [pa.field(c, pa.string()) for c in LABEL_COLUMNS]
)


def file_months(month: date) -> set[str]:
    """The ``YYYYMM`` name prefixes whose files may hold rows of invoice month ``month``."""
    start = month.replace(day=1)
    return {f"{start:%Y%m}", f"{(start - timedelta(days=1)):%Y%m}"}


class LocalGcpExports(LocalReports):
    """GCP billing export CSVs anywhere below a local directory."""

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


def _literal(text: str) -> Any:
    """JSON, or a Python literal (nise writes ``project.labels`` as ``[{'key': ...}]``); None if neither."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def labels_json(text: str) -> str | None:
    """``[{"key": k, "value": v}, ...]`` (or an object) as compact JSON object text; None if malformed."""
    body = text.strip()
    if body in ("", "[]", "{}", "null"):
        return "{}"
    doc = _literal(body)
    if isinstance(doc, list) and all(isinstance(i, dict) and "key" in i for i in doc):
        doc = {str(i["key"]): i.get("value") for i in doc}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if isinstance(doc, dict) else None


def credits_total(text: str) -> str | None:
    """The exact sum of the ``amount``s of a credits JSON array, as plain decimal text; None if malformed."""
    body = text.strip()
    if body in ("", "[]", "null"):
        return "0"
    try:
        doc = json.loads(body, parse_float=Decimal, parse_int=Decimal)
        total = sum((Decimal(c.get("amount") or 0) for c in doc), start=Decimal(0))
    except (ValueError, TypeError, AttributeError, ArithmeticError):
        return None
    return format(total, "f") if total.is_finite() else None


class GcpTable(CsvTable):
    """A GCP billing export CSV (BigQuery column paths such as ``service.id``) -> :data:`LINE_ITEM_SCHEMA`.

    Keeps the rows of the invoice month; the others count as ``rows_outside_month``.
    """

    SCHEMA = LINE_ITEM_SCHEMA
    REQUIRED = (USAGE_START, COST, INVOICE_MONTH)
    RAW_SUMS = {COST: COST, CREDIT_AMOUNT: CREDIT_AMOUNT}

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        out: dict[str, pa.Array] = {c: self.text(batch, c) for c in STRING_COLUMNS}
        out |= {c: self.timestamps(batch, c) for c in TIMESTAMP_COLUMNS}
        out["partition_date"] = pc.cast(self.timestamps(batch, "partition_date"), pa.date32())
        raw: dict[str, pa.Array] = {}
        for c in AMOUNT_COLUMNS:
            raw[c], out[c] = self.amount(batch, c)
        credit_text = self.map_distinct(out[CREDITS], credits_total)
        raw[CREDIT_AMOUNT], out[CREDIT_AMOUNT] = credit_text, pc.cast(credit_text, pa.float64())
        for c in LABEL_COLUMNS:
            out[c] = pc.fill_null(self.map_distinct(self.text(batch, c), labels_json), "{}")
        start = out[USAGE_START]
        keep = pc.and_(pc.equal(out[INVOICE_MONTH], f"{self.month:%Y%m}"), pc.is_valid(start))
        return self.finish(out, start, keep, raw)


@dataclass(frozen=True)
class MonthTotals(CostTotals):
    """Row counts, cost and credit sums of every step of one GCP invoice month, for asset checks."""

    HEADLINE = {"unblended_cost": "summary_cost", "credit_amount": "summary_credits"}
    MATCHED = (
        ("daily_cost", "raw_cost"),
        ("summary_cost", "raw_cost"),
        ("daily_credits", "raw_credits"),
        ("summary_credits", "raw_credits"),
    )

    source_rows: int
    line_item_rows: int
    daily_rows: int
    summary_rows: int
    #: Source rows of other invoice months (normal: files overlap months), not converted.
    rows_other_invoice_month: int
    #: Summary rows whose ``invoice_month`` is not this month (must be 0).
    summary_rows_other_invoice_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_cost: Decimal
    raw_credits: Decimal
    daily_cost: Decimal
    daily_credits: Decimal
    summary_cost: Decimal
    summary_credits: Decimal

    @property
    def rows_left_out(self) -> int:
        return self.rows_other_invoice_month

    @property
    def summary_rows_outside_month(self) -> int:  # type: ignore[override]
        """Summary rows outside this invoice month (the GCP counterpart of the other types' field)."""
        return self.summary_rows_other_invoice_month


@dataclass(frozen=True)
class GcpType(CloudType):
    """What GCP and GCP-local share (conversion, totals, credentials); as such, GCP-local: export CSVs in
    a local directory. :class:`GcpBigQueryType` reads the BigQuery billing export instead."""

    family = "GCP"
    cost_authtype = "project_id_service_account_json"
    credential_fetch = CredentialFetch()
    summary_table = SUMMARY_TABLE
    TABLE = GcpTable
    DAILY_SQL = "gcp_line_items_daily"
    MONTH_BOUNDS = True

    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        if not inputs.username:
            raise CredentialsError("Unable to find the GCP project id of the source")
        return {"project_id": inputs.username}

    def report_source(self, ctx: ProviderContext, access: ReportAccess) -> ReportSource:
        return LocalGcpExports(self.local_directory(ctx, access.local_roots))

    def month_totals(self, *, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
        """Counts, cost and credit sums of the line-item, daily and summary partitions of one invoice month.

        Raw cost and credits are the exact sums of the export's text taken while converting (footers).
        """
        rows, stats = self.line_item_stats(schema=schema, provider_uuid=provider_uuid, month=month, out_root=out_root)
        daily_files = parquet_files(daily_dir(out_root, schema, self.family, provider_uuid, month))
        daily_rows, (daily_cost, daily_credits) = column_sums(daily_files, [COST, CREDIT_AMOUNT])
        summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
        summary_rows, (summary_cost, summary_credits) = column_sums(summary_files, ["unblended_cost", CREDIT_AMOUNT])
        return MonthTotals(
            source_rows=stats.source_rows,
            line_item_rows=rows,
            daily_rows=daily_rows,
            summary_rows=summary_rows,
            rows_other_invoice_month=stats.rows_outside_month,
            summary_rows_other_invoice_month=rows_not_equal(summary_files, INVOICE_MONTH, f"{month:%Y%m}"),
            rows_without_usage_start=stats.rows_without_usage_start,
            uncast_cells=stats.uncast_cells,
            raw_cost=stats.raw(COST),
            raw_credits=stats.raw(CREDIT_AMOUNT),
            daily_cost=daily_cost,
            daily_credits=daily_credits,
            summary_cost=summary_cost,
            summary_credits=summary_credits,
        )


class NoReports:
    """The reports of a storage-only GCP source: none are read (Koku reads only posted files for them)."""

    def find_manifest(self, month: date) -> Manifest | None:
        return None

    def etag(self, key: str) -> str:
        raise IngestError("a storage-only GCP source has no report files")

    def open_file(self, key: str) -> BinaryIO:
        raise IngestError("a storage-only GCP source has no report files")


@dataclass(frozen=True)
class GcpBigQueryType(GcpType):
    """GCP: the Cloud Billing export table in BigQuery (:mod:`~koku_dagster.providers.gcp_bigquery`).

    Credentials are the ``project_id`` and, when Platform Sources holds one, a service account key
    (``service_account_json``, a secret); without it Application Default Credentials are used, or
    none against an overridden endpoint (``KOKU_GCP_BIGQUERY_URL``).
    """

    credential_fetch = CredentialFetch(password="always")

    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        credentials = super().shape_credentials(inputs)
        if inputs.password:
            try:
                gcp_bigquery.service_account_info(inputs.password)
            except gcp_bigquery.BigQueryError as exc:
                raise CredentialsError(str(exc)) from None
            credentials["service_account_json"] = inputs.password
        return credentials

    def check_settings(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> None:
        if data_source.get("storage_only"):
            return
        try:
            gcp_bigquery.billing_location(credentials, data_source)
        except gcp_bigquery.BigQueryError as exc:
            raise SettingsError(str(exc)) from None

    def _reader(self, ctx: ProviderContext, access: ReportAccess) -> gcp_bigquery.BigQueryExports:
        location = gcp_bigquery.billing_location(ctx.credentials, ctx.data_source)
        secret = ctx.credentials.get("service_account_json")
        client = gcp_bigquery.make_client(
            location, secret if isinstance(secret, str) else None, access.endpoints.gcp_bigquery_url
        )
        return gcp_bigquery.BigQueryExports(client, location)

    def check_reachable(self, ctx: ProviderContext, access: ReportAccess) -> None:
        """Koku's checks: the dataset exists, the table exists (or is found), it has the export's
        columns and is partitioned by day. Storage-only sources need a bucket (not read)."""
        if ctx.data_source.get("storage_only"):
            if not ctx.data_source.get("bucket"):
                raise Unreachable(gcp_bigquery.BUCKET_MISSING)
            return
        try:
            self._reader(ctx, access).table()
        except gcp_bigquery.BigQueryError as exc:
            raise Unreachable(str(exc)) from None

    def report_source(self, ctx: ProviderContext, access: ReportAccess) -> ReportSource:
        if ctx.data_source.get("storage_only"):
            return NoReports()
        return self._reader(ctx, access)


_BILLING_OPTIONAL = ("dataset", "bucket", "storage_only")
GCP = GcpBigQueryType("GCP", "google", ("dataset",), _BILLING_OPTIONAL, polled=True)
GCP_LOCAL = GcpType(
    "GCP-local", "google-local", ("bucket",), _BILLING_OPTIONAL, local_directory_key="bucket", polled=True
)
TYPES = (GCP, GCP_LOCAL)
