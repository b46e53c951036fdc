"""Azure cost ingestion, one step per function, for one provider and billing month.

Steps: ``source.find_manifest(month)`` -> :func:`convert_manifest` (export CSV -> line-item Parquet) ->
:func:`build_summary` (``reporting_azurecostentrylineitem_daily_summary``) -> :func:`month_totals`.
Azure has no separate daily table (Koku reads the line items as its daily table). Every step
replaces its whole month partition. No Dagster imports here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from koku_dagster.ingest.aws_columns import TIMESTAMP_TYPE
from koku_dagster.ingest.aws_source import Manifest, ReportFiles
from koku_dagster.ingest.csv_exports import CsvTable, FileStats, convert_files, export_footer_stats, normalise_name
from koku_dagster.ingest.csv_parquet import in_month
from koku_dagster.ingest.month_tables import build_table, column_sums, rows_outside_month
from koku_dagster.ingest.paths import line_items_dir, parquet_files, summary_dir
from koku_dagster.ingest.results import CostTotals, LineItemsResult, TableResult, match_to_cent

PROVIDER_TYPE = "Azure"
SUMMARY_TABLE = "reporting_azurecostentrylineitem_daily_summary"

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
    RAW_SUMS = (PRETAX_COST,)

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

    source_rows: int
    line_item_rows: int
    summary_rows: int
    rows_outside_month: int
    summary_rows_outside_month: int
    rows_without_usage_start: int
    uncast_cells: int
    raw_pretax_cost: Decimal
    summary_pretax_cost: Decimal

    @property
    def costs_match(self) -> bool:
        """The summary's pretax cost equals the raw export's to the cent."""
        return match_to_cent((self.summary_pretax_cost, self.raw_pretax_cost))


def convert_manifest(
    source: ReportFiles, manifest: Manifest, *, schema: str, provider_uuid: str, out_root: Path, max_workers: int = 2
) -> LineItemsResult[FileStats]:
    """Convert every export file of ``manifest`` into the month's line-item partition, replacing what was there."""
    partition = line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, manifest.billing_period_start)
    return convert_files(source, manifest, partition, AzureTable, max_workers)


def build_summary(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> TableResult:
    """Compute ``reporting_azurecostentrylineitem_daily_summary`` for the month from the line items."""
    inputs = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    params = {"line_item_files": [str(p) for p in inputs], "source_uuid": provider_uuid}
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    return build_table(SUMMARY_TABLE, params, inputs, partition, month, work_dir)


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts and cost sums of the line-item and summary partitions; raw cost from the line-item footers."""
    items = parquet_files(line_items_dir(out_root, schema, PROVIDER_TYPE, provider_uuid, month))
    rows, stats = export_footer_stats(items)
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
