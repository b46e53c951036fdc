"""FOCUS 1.2 rows from nise reports of AWS, Azure and GCP: totals, columns, values, categories, re-runs, and
the FinOps Foundation's focus-validator."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from koku_dagster.focus import (
    build_focus,
    check_allowed_values,
    check_billed_totals,
    check_mandatory_columns,
    focus_dir,
    line_item_billed_totals,
)
from koku_dagster.focus.build import base_type
from koku_dagster.focus.columns import COLUMNS, MANDATORY
from koku_dagster.providers.aws_cur import AwsTable
from koku_dagster.providers.azure import AzureTable
from koku_dagster.providers.gcp import GcpTable
from koku_dagster.reports.csv_parquet import convert_csv
from tests.focus_validator import validate

OCTOBER = date(2026, 10, 1)
UUID = "6a0f3c1e-2b4d-4e5f-8a9b-0c1d2e3f4a5b"
NISE = str(Path(sys.executable).with_name("nise"))
CENT = Decimal("0.01")
TABLES = {"AWS": AwsTable, "Azure": AzureTable, "GCP": GcpTable}
GCP_CREDITS = [
    [{"name": "Sustained usage discount", "amount": -0.0123456789, "id": "s", "type": "SUSTAINED_USAGE_DISCOUNT"}],
    [
        {"name": "Free tier", "amount": -0.5, "type": "FREE_TIER"},
        {"name": "Promo", "amount": -0.25, "type": "PROMOTION"},
    ],
]


def _nise(scratch: Path, *args: str) -> None:
    scratch.mkdir(parents=True, exist_ok=True)  # nise writes temporary files into its cwd
    subprocess.run([NISE, *args], cwd=scratch, check=True, capture_output=True, timeout=120)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _crafted(header: list[str], template: list[str], kind: str) -> list[list[str]]:
    """Copies of ``template`` with the cells of :data:`CRAFTED` changed, described ``crafted-{i}``."""
    out = []
    for i, (changes, _) in enumerate(CRAFTED[kind]):
        row = list(template)
        for name, value in (changes | {DESCRIPTION[kind]: f"crafted-{i}"}).items():
            row[header.index(name)] = value
        out.append(row)
    return out


#: AWS line-item types nise does not write, one crafted row each: (changes, expected FOCUS values).
SP_ARN = "arn:aws:savingsplans::123456789012:savingsplan/sp-1"
NO_PRICE = {"pricing/publicOnDemandCost": "", "pricing/publicOnDemandRate": ""}  # fees have no on-demand price
RI_ARN = "arn:aws:ec2:us-east-1:123456789012:reserved-instances/ri-1"
AWS_ROWS: list[tuple[dict[str, str], dict[str, object]]] = [
    ({"lineItem/LineItemType": "Tax", "lineItem/UnblendedCost": "12.34"},
     {"ChargeCategory": "Tax", "ChargeClass": None, "EffectiveCost": 12.34, "PricingQuantity": None}),
    ({"lineItem/LineItemType": "Credit", "lineItem/UnblendedCost": "-5.5"},
     {"ChargeCategory": "Credit", "EffectiveCost": -5.5, "ListCost": -5.5}),
    ({"lineItem/LineItemType": "Refund", "lineItem/UnblendedCost": "-2.25"},
     {"ChargeCategory": "Adjustment", "ChargeClass": "Correction", "EffectiveCost": -2.25}),
    ({"lineItem/LineItemType": "EdpDiscount", "lineItem/UnblendedCost": "-1.75"},
     {"ChargeCategory": "Credit", "EffectiveCost": -1.75}),
    ({"lineItem/LineItemType": "RIFee", "lineItem/UnblendedCost": "30",
      "reservation/ReservationARN": RI_ARN} | NO_PRICE,
     {"ChargeCategory": "Purchase", "ChargeFrequency": "Recurring", "EffectiveCost": 0.0,
      "CommitmentDiscountId": RI_ARN, "CommitmentDiscountType": "Reserved Instance"}),
    ({"lineItem/LineItemType": "Fee", "lineItem/UnblendedCost": "100", "reservation/ReservationARN": RI_ARN} | NO_PRICE,
     {"ChargeCategory": "Purchase", "ChargeFrequency": "One-Time", "EffectiveCost": 0.0}),
    ({"lineItem/LineItemType": "DiscountedUsage", "lineItem/UnblendedCost": "0", "reservation/ReservationARN": RI_ARN,
      "reservation/EffectiveCost": "0.8"},
     {"ChargeCategory": "Usage", "EffectiveCost": 0.8, "CommitmentDiscountStatus": "Used",
      "CommitmentDiscountCategory": "Usage", "PricingCategory": "Committed"}),
    ({"lineItem/LineItemType": "SavingsPlanCoveredUsage", "lineItem/UnblendedCost": "2",
      "savingsPlan/SavingsPlanArn": SP_ARN, "savingsPlan/SavingsPlanEffectiveCost": "1.2"},
     {"ChargeCategory": "Usage", "BilledCost": 2.0, "EffectiveCost": 1.2, "CommitmentDiscountStatus": "Used",
      "CommitmentDiscountCategory": "Spend", "CommitmentDiscountType": "Savings Plan"}),
    ({"lineItem/LineItemType": "SavingsPlanNegation", "lineItem/UnblendedCost": "-2",
      "savingsPlan/SavingsPlanArn": SP_ARN},
     {"ChargeCategory": "Adjustment", "BilledCost": -2.0, "EffectiveCost": 0.0, "CommitmentDiscountStatus": None}),
    ({"lineItem/LineItemType": "SavingsPlanRecurringFee", "lineItem/UnblendedCost": "3",
      "savingsPlan/SavingsPlanArn": SP_ARN, "savingsPlan/TotalCommitmentToDate": "3",
      "savingsPlan/UsedCommitment": "1.2"} | NO_PRICE,
     {"ChargeCategory": "Purchase", "ChargeFrequency": "Recurring", "BilledCost": 3.0, "EffectiveCost": 0.0}),
]  # fmt: skip
AZURE_ROWS: list[tuple[dict[str, str], dict[str, object]]] = [
    ({"ChargeType": "Purchase", "PricingModel": "Reservation", "ReservationId": "r-1", "Frequency": "OneTime",
      "CostInBillingCurrency": "500"},
     {"ChargeCategory": "Purchase", "ChargeFrequency": "One-Time", "EffectiveCost": 0.0, "CommitmentDiscountId": "r-1",
      "CommitmentDiscountStatus": None}),
    ({"ChargeType": "Usage", "PricingModel": "Reservation", "ReservationId": "r-1", "CostInBillingCurrency": "0",
      "Quantity": "2", "EffectivePrice": "0.25"},
     {"ChargeCategory": "Usage", "BilledCost": 0.0, "EffectiveCost": 0.5, "CommitmentDiscountStatus": "Used",
      "PricingCategory": "Committed"}),
    ({"ChargeType": "UnusedReservation", "PricingModel": "Reservation", "ReservationId": "r-1",
      "CostInBillingCurrency": "0", "Quantity": "4", "EffectivePrice": "0.25"},
     {"ChargeCategory": "Usage", "EffectiveCost": 1.0, "CommitmentDiscountStatus": "Unused", "ConsumedQuantity": None}),
    ({"ChargeType": "Refund", "PricingModel": "Reservation", "ReservationId": "r-1", "Frequency": "OneTime",
      "CostInBillingCurrency": "-100"},
     {"ChargeCategory": "Purchase", "ChargeClass": "Correction", "BilledCost": -100.0}),
    ({"ChargeType": "Tax", "CostInBillingCurrency": "7.5", "Frequency": "OneTime"},
     {"ChargeCategory": "Tax", "EffectiveCost": 7.5, "PricingCategory": None}),
]  # fmt: skip
GCP_ROWS: list[tuple[dict[str, str], dict[str, object]]] = [
    ({"cost_type": "tax", "cost": "4.2", "credits": "[]"}, {"ChargeCategory": "Tax", "x_CostType": "tax"}),
    (
        {"cost_type": "adjustment", "cost": "-1.1", "credits": "[]"},
        {"ChargeCategory": "Adjustment", "ChargeClass": "Correction", "x_CostType": "adjustment"},
    ),
]
CRAFTED = {"AWS": AWS_ROWS, "Azure": AZURE_ROWS, "GCP": GCP_ROWS}
#: The report column that becomes ChargeDescription, used to find the crafted rows.
DESCRIPTION = {"AWS": "lineItem/LineItemDescription", "Azure": "MeterName", "GCP": "sku.description"}


@dataclass(frozen=True)
class Month:
    """One provider month: its line-item files, the raw report's billed total per currency, crafted row count."""

    provider_type: str
    line_items: Path
    raw_billed: dict[str, Decimal]
    source_rows: int


def _raw_totals(
    header: list[str],
    rows: list[list[str]],
    cost: str,
    currency: str,
    keep: Callable[[list[str]], bool],
    extra: Callable[[list[str]], Decimal] = lambda row: Decimal(0),
) -> dict[str, Decimal]:
    """The billed total per currency straight from the CSV text (csv module + Decimal)."""
    totals: dict[str, Decimal] = {}
    c, cur = header.index(cost), header.index(currency)
    for row in rows:
        if keep(row):
            totals[row[cur]] = totals.get(row[cur], Decimal(0)) + Decimal(row[c] or 0) + extra(row)
    return totals


def _convert(kind: str, csv_path: Path, out: Path) -> Path:
    """The project's converter for ``kind`` applied to one report file, into ``out`` (the line-item partition)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / (csv_path.name.split(".")[0] + ".parquet")
    convert_csv(lambda: csv_path.open("rb"), csv_path.name, OCTOBER, target, TABLES[kind])
    return out


def _only(root: Path, pattern: str) -> Path:
    (path,) = sorted(root.rglob(pattern))
    return path


@pytest.fixture(scope="module")
def aws_month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    """A random nise CUR (Oct 1-3, 2026) plus one crafted row per line-item type nise does not write."""
    root = tmp_path_factory.mktemp("focus-aws")
    (root / "bucket").mkdir()
    _nise(root / "scratch", "report", "aws", "-s", "2026-10-01", "-e", "2026-10-03",
          "--aws-s3-bucket-name", str(root / "bucket"), "--aws-s3-report-name", "cur")  # fmt: skip
    path = _only(root / "bucket", "*.csv.gz")
    header, rows = _read(path)
    template = next(r for r in rows if r[header.index("lineItem/LineItemType")] == "Usage")
    rows += _crafted(header, template, "AWS")
    _write(path, header, rows)
    start = header.index("lineItem/UsageStartDate")
    raw = _raw_totals(header, rows, "lineItem/UnblendedCost", "lineItem/CurrencyCode",
                      lambda r: r[start].startswith("2026-10"))  # fmt: skip
    return Month("AWS", _convert("AWS", path, root / "line-items"), raw, len(rows))


@pytest.fixture(scope="module")
def azure_month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    """A nise Azure export (Oct 1-3, 2026) plus crafted reservation, refund and tax rows."""
    root = tmp_path_factory.mktemp("focus-azure")
    (root / "storage").mkdir()
    _nise(root / "scratch", "report", "azure", "-s", "2026-10-01", "-e", "2026-10-03",
          "--azure-container-name", str(root / "storage"), "--azure-report-name", "cost")  # fmt: skip
    path = _only(root / "storage", "*.csv")
    header, rows = _read(path)
    rows += _crafted(header, rows[0], "Azure")
    _write(path, header, rows)
    raw = _raw_totals(header, rows, "CostInBillingCurrency", "BillingCurrency", lambda r: True)
    return Month("Azure-local", _convert("Azure", path, root / "line-items"), raw, len(rows))


@pytest.fixture(scope="module")
def gcp_month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    """A nise GCP export (Oct 1-3, 2026) with credits on every 5th row, crafted tax and adjustment rows, and
    a few rows of another invoice month (not part of October)."""
    root = tmp_path_factory.mktemp("focus-gcp")
    (root / "bucket").mkdir()
    _nise(root / "scratch", "report", "gcp", "-s", "2026-10-01", "-e", "2026-10-03",
          "--gcp-bucket-name", str(root / "bucket"))  # fmt: skip
    path = _only(root / "bucket", "*.csv")
    header, rows = _read(path)
    credits, invoice = header.index("credits"), header.index("invoice.month")
    for i, row in enumerate(rows):
        if i % 5 == 0:
            row[credits] = json.dumps(GCP_CREDITS[i % len(GCP_CREDITS)])
    for row in rows[-3:]:
        row[invoice] = "202609"
    rows += _crafted(header, rows[1], "GCP")
    _write(path, header, rows)

    def credit_sum(row: list[str]) -> Decimal:
        doc = json.loads(row[credits] or "[]", parse_float=Decimal)
        return sum((Decimal(c["amount"]) for c in doc), start=Decimal(0))

    raw = _raw_totals(header, rows, "cost", "currency", lambda r: r[invoice] == "202610", credit_sum)
    return Month("GCP", _convert("GCP", path, root / "line-items"), raw, len(rows) - 3)


@pytest.fixture(params=["aws_month", "azure_month", "gcp_month"])
def month(request: pytest.FixtureRequest) -> Month:
    return request.getfixturevalue(request.param)


def _rows(directory: Path, where: str = "TRUE") -> list[dict[str, object]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(f"SELECT * FROM read_parquet('{directory}/*.parquet', hive_partitioning = false) WHERE {where}")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def _build(month: Month, out: Path) -> Path:
    target = focus_dir(out, UUID, OCTOBER)
    build_focus(month.line_items, provider_type=month.provider_type, provider_uuid=UUID, month=OCTOBER, out_dir=target)
    return target


def test_focus_rows_match_the_raw_report(month: Month, tmp_path: Path) -> None:
    target = focus_dir(tmp_path, UUID, OCTOBER)
    result = build_focus(month.line_items, provider_type=month.provider_type, provider_uuid=UUID, month=OCTOBER,
                         out_dir=target, work_dir=tmp_path / "work")  # fmt: skip
    assert target.relative_to(tmp_path).as_posix() == f"data/focus/source={UUID}/year=2026/month=10"
    assert result.files == tuple(sorted(target.glob("focus_*.parquet"))) and result.files
    assert result.bytes == sum(f.stat().st_size for f in result.files)

    # Billed totals to the cent against the CSV text, per currency; the helper for the check agrees.
    assert result.billed_cost.keys() == month.raw_billed.keys() == {"USD"}
    for currency, raw in month.raw_billed.items():
        assert abs(result.billed_cost[currency] - raw) < CENT / 2
    expected = line_item_billed_totals(month.line_items, month.provider_type)
    assert all(abs(expected[c] - month.raw_billed[c]) < CENT / 2 for c in expected)
    for outcome in (
        check_billed_totals(result.files, month.raw_billed),
        check_mandatory_columns(result.files),
        check_allowed_values(result.files),
    ):
        assert outcome.passed, outcome.description

    rows = _rows(target)
    assert len(rows) == result.rows >= month.source_rows
    names = list(rows[0])
    assert names[: len(COLUMNS)] == [c.name for c in COLUMNS]
    assert {"x_SourceUuid", "x_KokuProviderType"} <= set(names)
    assert all(n.startswith("x_") for n in names[len(COLUMNS) :])
    assert len(MANDATORY) == 21
    assert {r["x_SourceUuid"] for r in rows} == {UUID}
    assert {r["x_KokuProviderType"] for r in rows} == {month.provider_type}
    assert {r["BillingPeriodStart"] for r in rows} == {datetime(2026, 10, 1, tzinfo=UTC)}
    assert {r["BillingPeriodEnd"] for r in rows} == {datetime(2026, 11, 1, tzinfo=UTC)}
    assert all(isinstance(json.loads(str(r["Tags"])), dict) for r in rows)
    assert any(json.loads(str(r["Tags"])) for r in rows)  # nise writes tags/labels for some rows
    assert {r["ProviderName"] for r in rows} == {
        {"AWS": "AWS", "Azure": "Microsoft", "GCP": "Google Cloud"}[base_type(month.provider_type)]
    }


def test_rerun_replaces_the_month(aws_month: Month, tmp_path: Path) -> None:
    target = _build(aws_month, tmp_path)
    first = sorted(r["x_LineItemType"] or "" for r in _rows(target))
    (target / "stale.parquet").write_bytes(b"left by an earlier run")
    target = _build(aws_month, tmp_path)
    assert all(p.name.startswith("focus_") for p in target.iterdir())  # the stale file is gone
    assert sorted(r["x_LineItemType"] or "" for r in _rows(target)) == first  # no duplicates
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers

    empty = build_focus([], provider_type="AWS", provider_uuid=UUID, month=OCTOBER, out_dir=target)
    assert (empty.rows, empty.files, empty.billed_cost) == (0, (), {}) and list(target.iterdir()) == []
    assert check_billed_totals([], {}).passed and not check_billed_totals([], {"USD": Decimal("1")}).passed


@pytest.mark.parametrize("fixture", ["aws_month", "azure_month", "gcp_month"])
def test_charge_categories(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Each crafted row (credits, refunds, taxes, commitments) maps to its category, class and costs."""
    month: Month = request.getfixturevalue(fixture)
    rows = _rows(_build(month, tmp_path), "ChargeDescription LIKE 'crafted-%'")
    for i, (_, expected) in enumerate(CRAFTED[base_type(month.provider_type)]):
        matches = [r for r in rows if r["ChargeDescription"] == f"crafted-{i}"]
        assert [r["ChargeCategory"] for r in matches] == [expected["ChargeCategory"]], matches
        assert {k: matches[0][k] for k in expected} == pytest.approx(expected), i


def test_aws_unused_savings_plan_commitment(aws_month: Month, tmp_path: Path) -> None:
    """The unused part of a savings plan's recurring fee is a Usage row billed at 0 with the unused cost."""
    (unused,) = _rows(_build(aws_month, tmp_path), "CommitmentDiscountStatus = 'Unused'")
    assert unused["ChargeCategory"] == "Usage" and unused["BilledCost"] == 0
    assert unused["EffectiveCost"] == pytest.approx(1.8) and unused["CommitmentDiscountId"] == SP_ARN
    assert unused["ConsumedQuantity"] is None


def test_gcp_credits_are_credit_rows(gcp_month: Month, tmp_path: Path) -> None:
    rows = _rows(_build(gcp_month, tmp_path), "ChargeCategory = 'Credit'")
    assert {r["x_CreditType"] for r in rows} == {"SUSTAINED_USAGE_DISCOUNT", "FREE_TIER", "PROMOTION"}
    assert all(r["BilledCost"] == r["EffectiveCost"] < 0 and r["PricingQuantity"] is None for r in rows)
    assert {r["ChargeDescription"] for r in rows} == {"Sustained usage discount", "Free tier", "Promo"}


def test_checks_report_broken_files(aws_month: Month, tmp_path: Path) -> None:
    good = sorted(_build(aws_month, tmp_path).glob("focus_*.parquet"))
    bad = tmp_path / "bad.parquet"
    duckdb.sql(
        f"COPY (SELECT * EXCLUDE (Tags) REPLACE (CASE WHEN BilledCost > 1 THEN NULL ELSE BillingAccountId END "
        f"AS BillingAccountId, CASE WHEN ChargeCategory = 'Tax' THEN 'Taxes' ELSE ChargeCategory END "
        f"AS ChargeCategory), 1 AS Extra FROM read_parquet({[str(g) for g in good]}, hive_partitioning = false)) "
        f"TO '{bad}' (FORMAT parquet)"
    )
    mandatory = check_mandatory_columns([bad])
    assert not mandatory.passed
    assert {"Tags_Required", "Extra_NotCustomPrefixed", "BillingAccountId_NotNull"} == set(mandatory.failures)
    values = check_allowed_values([bad])
    assert not values.passed and values.failures == {"ChargeCategory_AllowedValues": 1}
    assert values.figures["skipped_rules"] == "Tags_IsJSONObject"
    totals = check_billed_totals(good, {"USD": aws_month.raw_billed["USD"] + Decimal("0.01")})
    assert not totals.passed and totals.failures == {"billed_cost_USD": 1} and "billed_cost_USD" in totals.description
    with pytest.raises(ValueError, match="OCP"):
        base_type("OCP")


#: Rules of focus-validator 1.0.0 that cannot pass on a FOCUS 1.2 file: the release names four columns as
#: no published FOCUS version does (Provider, Publisher, InvoiceIssuer and ResourceID for ProviderName,
#: PublisherName, InvoiceIssuerName and ResourceId), and its SkuPriceId rule queries ``ChargeType``, a
#: 1.0-preview column that FOCUS 1.0 renamed ChargeCategory.
VALIDATOR_MISNAMED = {"Provider": "ProviderName", "Publisher": "PublisherName", "InvoiceIssuer": "InvoiceIssuerName",
                      "ResourceID": "ResourceId", "ChargeType": "ChargeCategory"}  # fmt: skip
VALIDATOR_DEFECTS = {"Provider_Required", "Publisher_Required", "InvoiceIssuer_Required", "ResourceID_Required",
                     "SkuPriceId_Nullable"}  # fmt: skip


@pytest.mark.focus_validator
def test_focus_validator(month: Month, tmp_path: Path) -> None:
    """The FinOps Foundation's validator (newest spec version it knows, 1.0) on each provider type's output.

    As written, every rule passes except :data:`VALIDATOR_DEFECTS`; with the validator's column names added
    as aliases every rule passes. The 1.2 columns and rules the release does not know are checked by
    ``check_mandatory_columns`` and ``check_allowed_values`` above.
    """
    written = tmp_path / "focus.parquet"  # the validator reads one file
    table = pq.read_table(sorted(_build(month, tmp_path).glob("focus_*.parquet")))
    pq.write_table(table, written)
    aliased = tmp_path / "aliased.parquet"
    for theirs, ours in VALIDATOR_MISNAMED.items():  # pyarrow: DuckDB names are case-insensitive (ResourceID)
        table = table.append_column(theirs, table.column(ours))
    pq.write_table(table, aliased)

    report, with_aliases = validate(written, aliased)
    assert report.version == "1.0" and len(report.statuses) > 100
    assert report.with_status("failed") == VALIDATOR_DEFECTS
    assert report.with_status("passed") == set(report.statuses) - VALIDATOR_DEFECTS
    assert with_aliases.with_status("passed") == set(report.statuses)
