"""AWS CUR columns: header normalisation, the fixed line-item Parquet schema, and :class:`AwsTable`.

Both CUR header styles are accepted: the legacy ``category/Name`` style (``lineItem/UsageAmount``) and
the snake_case style (``line_item_usage_amount``). Each is mapped to Koku's normalised name
(``re.sub(r"\\W+", "_", legacy).lower()``, e.g. ``lineitem_usageamount``), so that both give the same
output columns. ``resourceTags/user:<key>`` columns become entries of the JSON column ``resourcetags``,
``costCategory/<key>`` columns entries of ``costcategory``; other ``resourceTags/*`` columns are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa
import pyarrow.compute as pc

from koku_dagster.reports.csv_parquet import TIMESTAMP_TYPE, CsvTable, column_position, in_month

RESOURCE_TAGS = "resourcetags"
COST_CATEGORY = "costcategory"
USAGE_START = "lineitem_usagestartdate"
UNBLENDED_COST = "lineitem_unblendedcost"
BLENDED_COST = "lineitem_blendedcost"

# Columns every input file must have; the others are added with defaults when absent.
REQUIRED_COLUMNS: tuple[str, ...] = (USAGE_START, UNBLENDED_COST)

STRING_COLUMNS: tuple[str, ...] = (
    "identity_lineitemid",
    "identity_timeinterval",
    "bill_invoiceid",
    "bill_billingentity",
    "bill_billtype",
    "bill_payeraccountid",
    "lineitem_usageaccountid",
    "lineitem_lineitemtype",
    "lineitem_productcode",
    "lineitem_usagetype",
    "lineitem_operation",
    "lineitem_availabilityzone",
    "lineitem_resourceid",
    "lineitem_currencycode",
    "lineitem_legalentity",
    "lineitem_lineitemdescription",
    "lineitem_taxtype",
    "pricing_term",
    "pricing_unit",
    "product_productname",
    "product_productfamily",
    "product_servicecode",
    "product_region",
    "product_location",
    "product_instancetype",
    "product_instancefamily",
    "product_operatingsystem",
    "product_physicalcores",
    "product_vcpu",
    "product_memory",
    "product_sku",
    "reservation_reservationarn",
    "savingsplan_savingsplanarn",
)
TIMESTAMP_COLUMNS: tuple[str, ...] = (
    "bill_billingperiodstartdate",
    "bill_billingperiodenddate",
    USAGE_START,
    "lineitem_usageenddate",
)
AMOUNT_COLUMNS: tuple[str, ...] = (
    "lineitem_usageamount",
    "lineitem_normalizationfactor",
    "lineitem_normalizedusageamount",
    "lineitem_unblendedrate",
    UNBLENDED_COST,
    "lineitem_blendedrate",
    BLENDED_COST,
    "pricing_publicondemandcost",
    "pricing_publicondemandrate",
    "reservation_effectivecost",
    "reservation_amortizedupfrontcostforusage",
    "reservation_recurringfeeforusage",
    "savingsplan_savingsplaneffectivecost",
    "savingsplan_savingsplanrate",
    "savingsplan_totalcommitmenttodate",
    "savingsplan_usedcommitment",
)

LINE_ITEM_SCHEMA = pa.schema(
    [pa.field(name, pa.string(), nullable=False) for name in STRING_COLUMNS]
    + [pa.field(name, TIMESTAMP_TYPE) for name in TIMESTAMP_COLUMNS]
    + [pa.field(name, pa.float64()) for name in AMOUNT_COLUMNS]
    + [pa.field(RESOURCE_TAGS, pa.string(), nullable=False), pa.field(COST_CATEGORY, pa.string(), nullable=False)]
)
OUTPUT_COLUMNS = frozenset(STRING_COLUMNS + TIMESTAMP_COLUMNS + AMOUNT_COLUMNS)

# snake_case category prefix -> normalised legacy category (``line_item_`` -> ``lineitem``).
_SNAKE_CATEGORIES: dict[str, str] = {
    "identity_": "identity",
    "bill_": "bill",
    "line_item_": "lineitem",
    "pricing_": "pricing",
    "product_": "product",
    "reservation_": "reservation",
    "savings_plan_": "savingsplan",
    "discount_": "discount",
    "split_line_item_": "splitlineitem",
}
_NON_WORD = re.compile(r"\W+")


class Role(Enum):
    """What a CSV column becomes in the line-item output."""

    COLUMN = "column"
    USER_TAG = "user_tag"
    COST_CATEGORY = "cost_category"
    DROP = "drop"


@dataclass(frozen=True)
class ColumnMapping:
    """One CSV header: its role and its output name (a column name or a JSON key)."""

    header: str
    role: Role
    name: str


def normalize_legacy(name: str) -> str:
    """Koku's normalisation of a legacy header: ``lineItem/UsageAmount`` -> ``lineitem_usageamount``."""
    return _NON_WORD.sub("_", name).lower()


def map_header(header: str) -> ColumnMapping:
    """Classify one CSV header of either style."""
    if "/" in header:
        category, _, rest = header.partition("/")
        if category == "resourceTags":
            if rest.startswith("user:"):
                return ColumnMapping(header, Role.USER_TAG, rest[len("user:") :])
            return ColumnMapping(header, Role.DROP, header)
        if category == "costCategory":
            return ColumnMapping(header, Role.COST_CATEGORY, rest)
        return _column(header, normalize_legacy(header))
    if header.startswith("resource_tags_"):
        rest = header[len("resource_tags_") :]
        if rest.startswith("user_"):
            return ColumnMapping(header, Role.USER_TAG, rest[len("user_") :])
        return ColumnMapping(header, Role.DROP, header)
    if header.startswith("cost_category_"):
        return ColumnMapping(header, Role.COST_CATEGORY, header[len("cost_category_") :])
    for prefix, category in _SNAKE_CATEGORIES.items():
        if header.startswith(prefix):
            rest = header[len(prefix) :].replace("_", "")
            return _column(header, f"{category}_{normalize_legacy(rest)}")
    return _column(header, normalize_legacy(header))


def _column(header: str, name: str) -> ColumnMapping:
    return ColumnMapping(header, Role.COLUMN if name in OUTPUT_COLUMNS else Role.DROP, name)


def _first(mappings: list[ColumnMapping], role: Role) -> dict[str, str]:
    """Output name -> positional CSV name of the headers of ``role``; the first header of a name wins."""
    return {m.name: column_position(i) for i, m in reversed(list(enumerate(mappings))) if m.role is role}


def _json_objects(items: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """One compact JSON object per row from (key, text column) pairs; empty values are left out.

    Each column is dictionary-encoded and every distinct value is encoded as a JSON member once; tag
    values repeat heavily (per resource), so this is far cheaper than building strings row by row.
    """
    if not items:
        return pa.repeat("{}", n)
    members = []
    for key, values in items:
        encoded = pc.dictionary_encode(values)
        name = json.dumps(key, ensure_ascii=False)
        texts = [f",{name}:{json.dumps(v, ensure_ascii=False)}" if v else "" for v in encoded.dictionary.to_pylist()]
        members.append(pc.take(pa.array(texts, pa.string()), encoded.indices))
    body = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*members, ""), 1)
    return pc.binary_join_element_wise("{", body, "}", "")


class AwsTable(CsvTable):
    """A CUR file (either header style) -> :data:`LINE_ITEM_SCHEMA`, keeping the rows of the billing month.

    User tags and cost categories become the JSON columns ``resourcetags`` and ``costcategory``.
    """

    SCHEMA = LINE_ITEM_SCHEMA
    REQUIRED = REQUIRED_COLUMNS
    RAW_SUMS = {UNBLENDED_COST: "unblended_cost", BLENDED_COST: "blended_cost"}
    TIME_FORMATS = ()

    def map_columns(self, headers: list[str]) -> dict[str, str]:
        mappings = [map_header(h) for h in headers]
        self.tags = sorted(_first(mappings, Role.USER_TAG).items())
        self.categories = sorted(_first(mappings, Role.COST_CATEGORY).items())
        return _first(mappings, Role.COLUMN)

    def needed(self) -> list[str]:
        return list(self.columns.values()) + [c for _, c in self.tags] + [c for _, c in self.categories]

    def convert(self, batch: pa.RecordBatch) -> pa.Table:
        """The batch's rows of the billing month, typed; updates the counters and exact cost sums."""
        n = batch.num_rows
        out: dict[str, pa.Array] = {name: self.text(batch, name) for name in STRING_COLUMNS}
        out |= {name: self.timestamps(batch, name) for name in TIMESTAMP_COLUMNS}
        texts: dict[str, pa.Array] = {}
        for name in AMOUNT_COLUMNS:
            texts[name], out[name] = self.amount(batch, name)
        out[RESOURCE_TAGS] = _json_objects([(k, batch.column(h)) for k, h in self.tags], n)
        out[COST_CATEGORY] = _json_objects([(k, batch.column(h)) for k, h in self.categories], n)
        start = out[USAGE_START]
        return self.finish(out, start, in_month(start, self.month), texts)
