"""Checks of a FOCUS partition, as plain results (no Dagster): billed totals, mandatory columns, allowed values.

Each check returns a :class:`CheckOutcome`; the Dagster layer turns it into an ``AssetCheckResult``
(``passed``, ``description``, ``metadata``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from koku_dagster.focus.build import billed_totals, connect
from koku_dagster.focus.columns import (
    BY_NAME,
    COLUMNS,
    CUSTOM_COLUMNS,
    CUSTOM_PREFIX,
    MANDATORY,
    NOT_NULL,
)
from koku_dagster.reports.duck import literal_files

CENT = Decimal("0.01")
_READ = "read_parquet($files, hive_partitioning = false)"
_IDENTIFIER = re.compile(r'"(\w+)"')


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check: whether it passed, and the rules that failed with their failing row counts."""

    name: str
    passed: bool
    description: str
    failures: dict[str, int] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Flat, JSON-friendly figures (Dagster metadata); failing rules as ``failed_{rule}``."""
        return self.figures | {f"failed_{rule}": rows for rule, rows in sorted(self.failures.items())}


def _outcome(name: str, failures: dict[str, int], ok: str, figures: dict[str, Any] | None = None) -> CheckOutcome:
    failed = {rule: rows for rule, rows in failures.items() if rows}
    description = ok if not failed else "failed: " + ", ".join(f"{r} ({n})" for r, n in sorted(failed.items()))
    return CheckOutcome(name, not failed, description, failed, figures or {})


def check_billed_totals(files: Sequence[Path], expected: Mapping[str, Decimal]) -> CheckOutcome:
    """sum(BilledCost) per BillingCurrency equals ``expected`` (the raw report's billed total) to the cent.

    A currency on only one side counts as a total of 0 on the other.
    """
    got = billed_totals(files)
    failures = {
        f"billed_cost_{cur or 'none'}": 1
        for cur in got.keys() | expected.keys()
        if abs(got.get(cur, Decimal(0)) - expected.get(cur, Decimal(0))) >= CENT / 2
    }
    figures = {f"billed_cost_{cur}": str(v) for cur, v in got.items()}
    figures |= {f"expected_{cur}": str(v) for cur, v in expected.items()}
    return _outcome("billed_totals", failures, "BilledCost equals the report's billed total to the cent", figures)


def _schema(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, str]:
    """Column name -> DuckDB type of the files in ``params``."""
    described = con.execute(f"DESCRIBE SELECT * FROM {_READ}", params).fetchall()
    return {str(name): str(kind) for name, kind, *_ in described}


def check_mandatory_columns(files: Sequence[Path]) -> CheckOutcome:
    """Every FOCUS column is present with its type, mandatory non-null columns hold no nulls, and every other
    column is a custom ``x_`` column."""
    if not files:
        return _outcome("mandatory_columns", {}, "no FOCUS rows")
    params = {"files": literal_files(files)}
    with connect() as con:
        schema = _schema(con, params)
        failures: dict[str, int] = {}
        for column in COLUMNS:
            if column.name not in schema:
                failures[f"{column.name}_Required"] = 1
            elif schema[column.name] != column.kind.value:
                failures[f"{column.name}_Type"] = 1
        for name, kind in CUSTOM_COLUMNS:
            if schema.get(name) != kind.value:
                failures[f"{name}_Required"] = 1
        for name in schema:
            if name not in BY_NAME and not name.startswith(CUSTOM_PREFIX):
                failures[f"{name}_NotCustomPrefixed"] = 1
        present = [c for c in (*NOT_NULL, *(n for n, _ in CUSTOM_COLUMNS)) if c in schema]
        counts = ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in present)
        row = con.execute(f"SELECT count(*), {counts} FROM {_READ}", params).fetchone() or ()
    failures |= {f"{c}_NotNull": int(n) for c, n in zip(present, row[1:], strict=True)}
    figures = {"rows": int(row[0]) if row else 0, "mandatory_columns": len(MANDATORY)}
    ok = "every FOCUS column present, typed and non-null as required"
    return _outcome("mandatory_columns", failures, ok, figures)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _money(column: str, unit_price: str) -> str:
    """Rows whose ``column`` is not ``unit_price`` x PricingQuantity (to the cent, or 0.01% of large amounts)."""
    product = f'"{unit_price}" * "PricingQuantity"'
    return (
        f'"{unit_price}" IS NOT NULL AND "PricingQuantity" IS NOT NULL AND "ChargeClass" IS NULL '
        f'AND abs({product} - "{column}") > greatest(0.01, abs("{column}") * 0.0001)'
    )


#: Rule name -> SQL condition true for a row that breaks the rule (FOCUS 1.2 requirements; docs/focus.md).
VALUE_RULES: dict[str, str] = {
    **{f"{c.name}_AllowedValues": f'"{c.name}" NOT IN ({_quoted(c.allowed)})' for c in COLUMNS if c.allowed},
    "BillingCurrency_IsCurrencyCode": "NOT regexp_full_match(\"BillingCurrency\", '[A-Z]{3}')",
    "BillingPeriod_IsOneMonth": (
        '"BillingPeriodStart" <> date_trunc(\'month\', "BillingPeriodStart") '
        'OR "BillingPeriodEnd" <> "BillingPeriodStart" + INTERVAL 1 MONTH'
    ),
    "ChargePeriod_EndNotBeforeStart": '"ChargePeriodEnd" < "ChargePeriodStart"',
    "Costs_AreFinite": " OR ".join(
        f'NOT isfinite("{c}")' for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
    ),
    "Tags_IsJSONObject": 'NOT json_valid("Tags") OR json_type("Tags") <> \'OBJECT\'',
    "CommitmentDiscount_NullWithoutId": (
        '"CommitmentDiscountId" IS NULL AND ("CommitmentDiscountStatus" IS NOT NULL '
        'OR "CommitmentDiscountCategory" IS NOT NULL OR "CommitmentDiscountType" IS NOT NULL)'
    ),
    "CommitmentDiscountStatus_SetForUsage": (
        '"CommitmentDiscountId" IS NOT NULL AND "ChargeCategory" = \'Usage\' AND "CommitmentDiscountStatus" IS NULL'
    ),
    "CommitmentPurchase_EffectiveCostIsZero": (
        '"ChargeCategory" = \'Purchase\' AND "CommitmentDiscountId" IS NOT NULL AND "EffectiveCost" <> 0'
    ),
    "ConsumedQuantity_OnlyForUsedUsage": (
        "(\"ChargeCategory\" <> 'Usage' OR \"CommitmentDiscountStatus\" = 'Unused') "
        'AND ("ConsumedQuantity" IS NOT NULL OR "ConsumedUnit" IS NOT NULL)'
    ),
    "Tax_HasNoPricing": (
        '"ChargeCategory" = \'Tax\' AND ("PricingQuantity" IS NOT NULL OR "PricingUnit" IS NOT NULL '
        'OR "PricingCategory" IS NOT NULL)'
    ),
    "PricingCategory_SetForUsageAndPurchase": (
        '"ChargeCategory" IN (\'Usage\', \'Purchase\') AND "ChargeClass" IS NULL AND "PricingCategory" IS NULL'
    ),
    "SkuPriceId_SetForUsageAndPurchase": (
        "\"ChargeCategory\" IN ('Usage', 'Purchase') AND \"ChargeClass\" IS NULL "
        'AND "SkuId" IS NOT NULL AND "SkuPriceId" IS NULL'
    ),
    "Purchase_IsNotUsageBased": "\"ChargeCategory\" = 'Purchase' AND \"ChargeFrequency\" = 'Usage-Based'",
    "Resource_NullWithoutId": '"ResourceId" IS NULL AND ("ResourceName" IS NOT NULL OR "ResourceType" IS NOT NULL)',
    "ListCost_IsUnitPriceTimesQuantity": _money("ListCost", "ListUnitPrice"),
    "ContractedCost_IsUnitPriceTimesQuantity": _money("ContractedCost", "ContractedUnitPrice"),
}


def check_allowed_values(files: Sequence[Path]) -> CheckOutcome:
    """Allowed values and the FOCUS 1.2 rules between columns (:data:`VALUE_RULES`) hold on every row.

    A rule whose condition is null for a row (a null column) does not count that row as failing; a rule on a
    missing column is skipped (listed in ``skipped_rules``; :func:`check_mandatory_columns` reports the column).
    """
    if not files:
        return _outcome("allowed_values", {}, "no FOCUS rows")
    params = {"files": literal_files(files)}
    with connect() as con:
        schema = _schema(con, params)
        rules = {rule: sql for rule, sql in VALUE_RULES.items() if set(_IDENTIFIER.findall(sql)) <= schema.keys()}
        counts = ", ".join(f"count(*) FILTER (WHERE {condition})" for condition in rules.values())
        row = con.execute(f"SELECT count(*), {counts} FROM {_READ}", params).fetchone() or ()
    failures = {rule: int(n) for rule, n in zip(rules, row[1:], strict=True)}
    skipped = sorted(VALUE_RULES.keys() - rules.keys())
    figures = {"rows": int(row[0]) if row else 0, "rules": len(rules), "skipped_rules": ", ".join(skipped)}
    return _outcome("allowed_values", failures, "allowed values and column rules hold", figures)
