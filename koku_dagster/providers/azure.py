"""Azure and Azure-local: cost exports (CSV) of Azure Cost Management.

An export month lives at ``{export_name}/{YYYYMMDD-YYYYMMDD}/`` (month start to month end, as Azure and
nise write it; a range ending on the next month's 1st is accepted too). If the folder holds a JSON
manifest (``blobs[].blobName``) its blobs are the month's files; otherwise the latest CSV is. The
assembly id is the UUID in the manifest's or file's key. Steps: the export -> line items
(:class:`AzureTable`) -> ``reporting_azurecostentrylineitem_daily_summary`` (Azure has no separate
daily table: Koku reads the line items as its daily table) -> :func:`month_totals` for the checks.
Azure-local reads a local directory (:class:`LocalAzureExports`); Azure reads Blob Storage after finding
the export with the Cost Management API (:mod:`koku_dagster.providers.azure_blob`, loaded on first use).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from koku_dagster.providers.base import (
    CloudType,
    CredentialFetch,
    CredentialInputs,
    CredentialsError,
    ProviderContext,
    ReportAccess,
)
from koku_dagster.reports.csv_parquet import TIMESTAMP_TYPE, CsvTable, in_month, normalise_name
from koku_dagster.reports.errors import ManifestError
from koku_dagster.reports.local import LocalReports
from koku_dagster.reports.model import Manifest, ReportFile, ReportSource, key_parts
from koku_dagster.reports.month_tables import column_sums, rows_outside_month
from koku_dagster.reports.paths import parquet_files, summary_dir
from koku_dagster.reports.results import CostTotals

SUMMARY_TABLE = "reporting_azurecostentrylineitem_daily_summary"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REPORT_SUFFIXES = (".csv", ".csv.gz")
CREDENTIAL_KEYS = frozenset({"client_id", "client_secret", "subscription_id", "tenant_id"})


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


def read_manifest(raw: bytes, key: str) -> tuple[list[str], str | None]:
    """(report blob names, assembly id or None) of an export manifest; the id is the UUID in its key or run id."""
    try:
        doc: Any = json.loads(raw)
        names = [b["blobName"] for b in doc["blobs"]]
        run_id = (doc.get("runInfo") or {}).get("runId")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"manifest {key} is not a valid Azure export manifest ({type(exc).__name__})") from None
    if not names or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"manifest {key} lists no report blobs")
    return names, uuid_in(key) or (uuid_in(run_id) if isinstance(run_id, str) else None)


class LocalAzureExports(LocalReports):
    """Azure cost exports in a local directory: ``{export_name}/{YYYYMMDD-YYYYMMDD}/...``.

    Without ``export_name`` every export folder is read and their files form one manifest. File keys
    are relative to the directory.
    """

    def __init__(self, storage_dir: Path, export_name: str | None = None) -> None:
        if export_name is not None and len(key_parts(export_name)) != 1:
            raise ManifestError(f"export name must be one folder name: {export_name!r}")
        super().__init__(storage_dir)
        self.export_name = export_name

    def _export_dirs(self) -> list[Path]:
        if self.export_name:
            return [self.root / self.export_name]
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
        names, assembly_id = read_manifest(self._inside(path).read_bytes(), key)
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


#: Names of the older export schema (after normalisation) -> the current ones.
OLD_TO_NEW = {
    "usagedatetime": "date",
    "pretaxcost": "costinbillingcurrency",
    "usagequantity": "quantity",
    "subscriptionguid": "subscriptionid",
    "instanceid": "resourceid",
    "resourcegroup": "resourcegroupname",
    "resourcerate": "effectiveprice",
    "currency": "billingcurrency",
    "billingcurrencycode": "billingcurrency",
    "product": "productname",
}
USAGE_DATE = "date"
PRETAX_COST = "costinbillingcurrency"
TAGS = "tags"
STRING_COLUMNS = (
    "subscriptionid", "subscriptionname", "resourcegroupname", "resourcelocation", "productname",
    "metercategory", "metersubcategory", "meterid", "metername", "meterregion", "unitofmeasure",
    "consumedservice", "resourceid", "resourcename", "servicefamily", "billingcurrency", "billingaccountid",
    "billingprofileid", "invoicesectionname", "chargetype", "pricingmodel", "publishertype", "publishername",
    "reservationid", "reservationname", "offerid", "frequency", "partnumber", "additionalinfo",
    "serviceinfo1", "serviceinfo2", "costcenter", "invoiceid",
)  # fmt: skip
TIMESTAMP_COLUMNS = (USAGE_DATE, "billingperiodstartdate", "billingperiodenddate")
AMOUNT_COLUMNS = ("quantity", "effectiveprice", PRETAX_COST, "unitprice", "paygprice")
LINE_ITEM_SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in STRING_COLUMNS]
    + [pa.field(c, TIMESTAMP_TYPE) for c in TIMESTAMP_COLUMNS]
    + [pa.field(c, pa.float64()) for c in AMOUNT_COLUMNS]
    + [pa.field(TAGS, pa.string())]
)


def tags_json(text: str) -> str | None:
    """Azure tags as compact JSON object text (``{}`` when empty); None when not a JSON object.

    Accepts ``{"k": "v"}`` and the brace-less ``"k": "v","k2": "v2"`` of older exports.
    """
    body = text.strip()
    if body in ("", '""', "{}"):
        return "{}"
    if not body.startswith("{"):
        body = "{" + body + "}"
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if isinstance(doc, dict) else None


class AzureTable(CsvTable):
    """An Azure export (current ``Date`` schema or older ``UsageDateTime`` one) -> :data:`LINE_ITEM_SCHEMA`."""

    SCHEMA = LINE_ITEM_SCHEMA
    REQUIRED = (USAGE_DATE, PRETAX_COST)
    RAW_SUMS = {PRETAX_COST: PRETAX_COST}

    @staticmethod
    def column_name(header: str) -> str:
        name = normalise_name(header)
        return OLD_TO_NEW.get(name, name)

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        out: dict[str, pa.Array] = {c: self.text(batch, c) for c in STRING_COLUMNS}
        out |= {c: self.timestamps(batch, c) for c in TIMESTAMP_COLUMNS}
        raw: dict[str, pa.Array] = {}
        for c in AMOUNT_COLUMNS:
            raw[c], out[c] = self.amount(batch, c)
        out[TAGS] = pc.fill_null(self.map_distinct(self.text(batch, TAGS), tags_json), "{}")
        start = out[USAGE_DATE]
        return self.finish(out, start, in_month(start, self.month), raw)


@dataclass(frozen=True)
class MonthTotals(CostTotals):
    """Row counts and cost sums of every step of one Azure provider month, for asset checks."""

    HEADLINE = {"pretax_cost": "summary_pretax_cost"}
    MATCHED = (("summary_pretax_cost", "raw_pretax_cost"),)

    source_rows: int
    line_item_rows: int
    summary_rows: int
    rows_outside_month: int
    summary_rows_outside_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_pretax_cost: Decimal
    summary_pretax_cost: Decimal


@dataclass(frozen=True)
class AzureType(CloudType):
    """Azure (credentials of an app registration) and Azure-local (export folders in a local directory)."""

    family = "Azure"
    cost_authtype = "tenant_id_client_id_client_secret"
    credential_fetch = CredentialFetch(password="always", application=True)
    summary_table = SUMMARY_TABLE
    TABLE = AzureTable

    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        azure = inputs.auth_extra.get("azure")
        credentials = {
            "client_id": inputs.username or None,
            "client_secret": inputs.password,
            "subscription_id": inputs.application_extra.get("subscription_id"),
            "tenant_id": azure.get("tenant_id") if isinstance(azure, dict) else None,
        }
        missing = sorted(key for key, value in credentials.items() if not value)
        if missing:
            raise CredentialsError(f"Azure credentials are missing {', '.join(missing)}")
        return credentials

    def settings_complete(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> bool:
        return (
            bool(data_source)
            and set(credentials) == CREDENTIAL_KEYS
            and {"resource_group", "storage_account"} <= set(data_source)
        )

    def report_source(self, ctx: ProviderContext, access: ReportAccess) -> ReportSource:
        if self.local_directory_key is None:
            from koku_dagster.providers.azure_blob import BlobExports

            return BlobExports.for_provider(ctx, access.endpoints)
        return LocalAzureExports(self.local_directory(ctx, access.local_roots), ctx.data_source.get("export_name"))

    def check_reachable(self, ctx: ProviderContext, access: ReportAccess) -> None:
        """Azure: a token, the export and its container (fixed messages); Azure-local: the folder is readable."""
        if self.local_directory_key is not None:
            return super().check_reachable(ctx, access)
        from koku_dagster.providers.azure_blob import check_blob_exports

        check_blob_exports(ctx, access.endpoints)

    def month_totals(self, *, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
        """Counts and cost sums of the line-item and summary partitions; raw cost from the line-item footers."""
        rows, stats = self.line_item_stats(schema=schema, provider_uuid=provider_uuid, month=month, out_root=out_root)
        summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
        summary_rows, (summary_cost,) = column_sums(summary_files, ["pretax_cost"])
        return MonthTotals(
            source_rows=stats.source_rows,
            line_item_rows=rows,
            summary_rows=summary_rows,
            rows_outside_month=stats.rows_outside_month,
            summary_rows_outside_month=rows_outside_month(summary_files, "usage_start", month),
            rows_without_usage_start=stats.rows_without_usage_start,
            uncast_cells=stats.uncast_cells,
            raw_pretax_cost=stats.raw(PRETAX_COST),
            summary_pretax_cost=summary_cost,
        )


_BILLING_REQUIRED = ("resource_group", "storage_account")
_BILLING_OPTIONAL = ("scope", "export_name", "storage_only", "metered")
AZURE = AzureType("Azure", "azure", _BILLING_REQUIRED, _BILLING_OPTIONAL, polled=True)
AZURE_LOCAL = AzureType(
    "Azure-local",
    "azure-local",
    _BILLING_REQUIRED,
    _BILLING_OPTIONAL,
    local_directory_key="storage_account",
    polled=True,
)
TYPES = (AZURE, AZURE_LOCAL)
