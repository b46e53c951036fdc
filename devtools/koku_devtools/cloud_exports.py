"""Nise cost reports put where the real Azure and GCP readers find them: Azure Blob Storage (Azurite)
and a BigQuery billing export table (local-bigquery).

- :func:`upload_azure_export`: a nise Azure export as Cost Management writes one run of an export,
  ``{rootFolderPath}/{export}/{YYYYMMDD-YYYYMMDD}/{run id}/part_0_0001.csv`` plus ``manifest.json``
  (``blobs[].blobName`` are paths from the container root).
- :func:`create_gcp_billing_table` and :func:`load_gcp_export`: the detailed (resource-level) billing
  export table ``gcp_billing_export_resource_v1_XXXXXX_XXXXXX_XXXXXX`` with the real export's schema,
  day-partitioned on ``_PARTITIONTIME``, filled from a nise GCP export.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient
    from google.cloud import bigquery

# --------------------------------------------------------------------------- Azure

_MONTH_DIR = "[0-9]" * 8 + "-" + "[0-9]" * 8


@dataclass(frozen=True)
class AzureExportRun:
    """One export run written to Blob Storage."""

    run_id: str
    directory: str  # {rootFolderPath}/{export}/{YYYYMMDD-YYYYMMDD}
    blob_names: tuple[str, ...]  # the CSV parts, from the container root
    manifest_name: str | None  # {directory}/{run id}/manifest.json, when written


def blob_path(*parts: str) -> str:
    """Blob path parts joined with single slashes, empty parts dropped."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _split_csv(path: Path, parts: int) -> list[tuple[bytes, int]]:
    """The CSV as ``parts`` CSV documents (header in each), with their row counts."""
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    size = -(-len(rows) // parts) if rows else 0
    chunks = [rows[i * size : (i + 1) * size] for i in range(parts)] if rows else [[] for _ in range(parts)]
    documents = []
    for chunk in chunks:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(chunk)
        documents.append((text.getvalue().encode("utf-8"), len(chunk)))
    return documents


def upload_azure_export(
    container: ContainerClient,
    csv_path: Path,
    *,
    export_name: str,
    period: str,
    root_folder_path: str = "",
    run_id: str | None = None,
    parts: int = 1,
    with_manifest: bool = True,
    submitted: datetime | None = None,
) -> AzureExportRun:
    """Upload one export run of ``csv_path`` for billing ``period`` (``YYYYMMDD-YYYYMMDD``).

    The CSV is split into ``parts`` blobs ``part_0_0001.csv``... under ``{run id}/`` beside a
    ``manifest.json`` listing them. Without a manifest, the CSV is uploaded whole as
    ``{directory}/{csv name}`` (the older export layout).
    """
    directory = blob_path(root_folder_path, export_name, period)
    run_id = run_id or str(uuid.uuid4())
    if not with_manifest:
        name = blob_path(directory, csv_path.name)
        with csv_path.open("rb") as data:
            container.upload_blob(name, data, overwrite=True)
        return AzureExportRun(run_id, directory, (name,), None)
    blobs: list[dict[str, Any]] = []
    for index, (document, rows) in enumerate(_split_csv(csv_path, parts)):
        name = blob_path(directory, run_id, f"part_0_{index + 1:04d}.csv")
        container.upload_blob(name, document, overwrite=True)
        blobs.append({"blobName": name, "byteCount": len(document), "dataRowCount": rows})
    start, _, end = period.partition("-")
    submitted = submitted or datetime.now(UTC)
    manifest = {
        "manifestVersion": "2024-04-01",
        "dataFormat": "Csv",
        "byteCount": sum(b["byteCount"] for b in blobs),
        "blobCount": len(blobs),
        "dataRowCount": sum(b["dataRowCount"] for b in blobs),
        "exportConfig": {"exportName": export_name, "type": "ActualCost", "timeFrame": "MonthToDate",
                         "granularity": "Daily"},
        "deliveryConfig": {"partitionData": True, "dataOverwriteBehavior": "CreateNewReport", "fileFormat": "Csv",
                           "compressionMode": "None", "containerUri": container.url,
                           "rootFolderPath": root_folder_path},
        "runInfo": {"executionType": "Scheduled", "submittedTime": submitted.isoformat().replace("+00:00", "Z"),
                    "runId": run_id, "startDate": f"{date.fromisoformat(start)}T00:00:00",
                    "endDate": f"{date.fromisoformat(end)}T00:00:00"},
        "blobs": blobs,
    }  # fmt: skip
    manifest_name = blob_path(directory, run_id, "manifest.json")
    container.upload_blob(manifest_name, json.dumps(manifest, indent=2).encode(), overwrite=True)
    return AzureExportRun(run_id, directory, tuple(b["blobName"] for b in blobs), manifest_name)


def upload_nise_azure(
    container: ContainerClient, nise_dir: Path, *, export_name: str, root_folder_path: str = "", **options: Any
) -> list[AzureExportRun]:
    """Upload every month of a nise Azure export (``{nise_dir}/{report}/{YYYYMMDD-YYYYMMDD}/*.csv``, as
    :func:`koku_devtools.nise_reports.generate` writes it) as one run each; ``options`` go to
    :func:`upload_azure_export`."""
    return [
        upload_azure_export(container, path, export_name=export_name, period=path.parent.name,
                            root_folder_path=root_folder_path, **options)
        for path in sorted(nise_dir.glob(f"*/{_MONTH_DIR}/*.csv"))
    ]  # fmt: skip


# --------------------------------------------------------------------------- GCP


def _gcp_schema() -> list[bigquery.SchemaField]:
    """The detailed (resource-level) billing export's columns, as Google documents them."""
    from google.cloud.bigquery import SchemaField as F

    def record(name: str, *fields: F, repeated: bool = False) -> F:
        return F(name, "RECORD", mode="REPEATED" if repeated else "NULLABLE", fields=fields)

    def strings(*names: str) -> tuple[F, ...]:
        return tuple(F(n, "STRING") for n in names)

    def key_values(name: str) -> F:
        return record(name, *strings("key", "value"), repeated=True)

    return [
        F("billing_account_id", "STRING"),
        record("service", *strings("id", "description")),
        record("sku", *strings("id", "description")),
        F("usage_start_time", "TIMESTAMP"),
        F("usage_end_time", "TIMESTAMP"),
        record(
            "project",
            *strings("id", "number", "name"),
            key_values("labels"),
            F("ancestry_numbers", "STRING"),
            record("ancestors", *strings("resource_name", "display_name"), repeated=True),
        ),
        key_values("labels"),
        key_values("system_labels"),
        record("location", *strings("location", "country", "region", "zone")),
        record("tags", *strings("key", "value"), F("inherited", "BOOLEAN"), F("namespace", "STRING"), repeated=True),
        F("transaction_type", "STRING"),
        F("seller_name", "STRING"),
        F("export_time", "TIMESTAMP"),
        F("cost", "FLOAT"),
        F("currency", "STRING"),
        F("currency_conversion_rate", "FLOAT"),
        record(
            "usage",
            F("amount", "FLOAT"),
            F("unit", "STRING"),
            F("amount_in_pricing_units", "FLOAT"),
            F("pricing_unit", "STRING"),
        ),
        record("credits", *strings("name"), F("amount", "FLOAT"), *strings("full_name", "id", "type"), repeated=True),
        record("invoice", *strings("month", "publisher_type")),
        F("cost_type", "STRING"),
        record("adjustment_info", *strings("id", "description", "mode", "type")),
        record(
            "price",
            F("effective_price", "NUMERIC"),
            F("tier_start_amount", "NUMERIC"),
            F("unit", "STRING"),
            F("pricing_unit_quantity", "NUMERIC"),
        ),
        record("resource", *strings("name", "global_name")),
        F("cost_at_list", "FLOAT"),
    ]


def _sql_type(field: bigquery.SchemaField) -> str:
    if field.field_type in ("RECORD", "STRUCT"):
        kind = f"STRUCT<{', '.join(f'{f.name} {_sql_type(f)}' for f in field.fields)}>"
    else:
        kind = {"FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(field.field_type, field.field_type)
    return f"ARRAY<{kind}>" if field.mode == "REPEATED" else kind


def create_gcp_billing_table(client: bigquery.Client, table: str, *, day_partitioned: bool = True) -> None:
    """Create ``project.dataset.table`` (and its dataset) with the export's schema, by DDL, partitioned by
    ingestion day (``_PARTITIONTIME``) unless ``day_partitioned`` is false."""
    project, dataset, _ = table.split(".")
    client.create_dataset(f"{project}.{dataset}", exists_ok=True)
    columns = ",\n  ".join(f"`{f.name}` {_sql_type(f)}" for f in _gcp_schema())
    partition = " PARTITION BY _PARTITIONDATE" if day_partitioned else ""
    client.query_and_wait(f"CREATE TABLE `{table}` (\n  {columns}\n){partition}")


def _parse_list(text: str) -> Any:
    """JSON, or a Python literal (nise writes ``project.labels`` as ``[{'key': ...}]``)."""
    try:
        return json.loads(text or "[]")
    except ValueError:
        return ast.literal_eval(text)


def _value(field: bigquery.SchemaField, raw: Any) -> Any:
    """``raw`` (CSV text, or parsed JSON inside a repeated record) as the JSON value of ``field``."""
    if field.mode == "REPEATED":
        items = _parse_list(raw) if isinstance(raw, str) else raw
        return [_record(field.fields, item) for item in items or []]
    if raw is None or raw == "":
        return None
    if field.field_type == "FLOAT":
        return float(raw)
    if field.field_type == "TIMESTAMP":
        moment = datetime.fromisoformat(str(raw))
        return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    return str(raw)


def _record(fields: Sequence[bigquery.SchemaField], values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A row (or nested record) from ``values`` keyed by dotted CSV column names (or JSON keys)."""
    out: dict[str, Any] = {}
    for field in fields:
        key = f"{prefix}{field.name}"
        if field.field_type == "RECORD" and field.mode != "REPEATED":
            nested = _record(field.fields, values, f"{key}.")
            out[field.name] = nested if any(v not in (None, []) for v in nested.values()) else None
        else:
            out[field.name] = _value(field, values.get(key))
    return out


def _export_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def load_gcp_export(
    client: bigquery.Client,
    table: str,
    csv_path: Path,
    *,
    export_time: datetime | None = None,
    days: Collection[date] | None = None,
) -> int:
    """Append the rows of a nise GCP export CSV to billing table ``table``; return the row count.

    In a table partitioned by ingestion day, each row's ``_PARTITIONTIME`` is its ``partition_date``
    (nise's column), else the day of its ``usage_start_time``. ``export_time`` replaces every row's
    export time (a re-export; times without a zone are UTC); ``days`` keeps only the rows of those
    partition days. Rows go through a load job into a scratch table and one ``INSERT ... SELECT``
    that sets ``_PARTITIONTIME``.
    """
    from google.cloud import bigquery

    schema = _gcp_schema()
    rows = []
    for values in _export_rows(csv_path):
        day = values.get("partition_date") or values["usage_start_time"][:10]
        if days is not None and date.fromisoformat(day) not in days:
            continue
        if export_time is not None:
            values["export_time"] = export_time.isoformat()
        rows.append({**_record(schema, values), "partition_day": day})
    if not rows:
        return 0
    project, dataset, _ = table.split(".")
    scratch = f"{project}.{dataset}._koku_load_{uuid.uuid4().hex}"
    config = bigquery.LoadJobConfig(schema=[*schema, bigquery.SchemaField("partition_day", "DATE")])
    client.load_table_from_json(rows, scratch, job_config=config).result()
    partitioning = client.get_table(table).time_partitioning
    by_ingestion_day = partitioning is not None and partitioning.field is None
    columns = ", ".join(f"`{f.name}`" for f in schema)
    target, source = (f"_PARTITIONTIME, {columns}", f"TIMESTAMP(partition_day), {columns}")
    try:
        client.query_and_wait(
            f"INSERT INTO `{table}` ({target if by_ingestion_day else columns}) "
            f"SELECT {source if by_ingestion_day else columns} FROM `{scratch}`"
        )
    finally:
        client.delete_table(scratch, not_found_ok=True)
    return len(rows)
