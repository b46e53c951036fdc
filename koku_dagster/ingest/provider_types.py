"""The ingestion steps of each provider type, behind the one interface the assets use.

Every type goes manifest -> line items -> (daily line items) -> summary, but each has its own
converter, tables and totals. :data:`STEPS` maps the provider type as filed in paths (``AWS``,
``Azure``, ``GCP``, ``OCP``; ``-local`` types share their cloud's steps) to those steps, and turns each
type's month totals into the same figures for the three asset checks. No Dagster imports here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from koku_dagster.ingest import aws, azure, gcp, ocp
from koku_dagster.ingest.aws_source import Manifest, ReportFiles
from koku_dagster.ingest.paths import daily_dir, line_items_dir, ocp_daily_dir, ocp_line_items_dir


@dataclass(frozen=True)
class MonthPartition:
    """One provider month, where its files live, and what the steps need to know about the provider."""

    schema: str
    provider_type: str  # as filed in paths: AWS, Azure, GCP or OCP
    provider_uuid: str
    month: date
    out_root: Path
    work_dir: Path
    cluster_id: str = ""

    @property
    def where(self) -> dict[str, Any]:
        return {"schema": self.schema, "provider_uuid": self.provider_uuid, "month": self.month, "out_root": self.out_root}


class WrittenTable(Protocol):
    """A derived partition as written (daily line items or a summary)."""

    partition: Path
    files: tuple[Path, ...]
    rows: int
    bytes: int


@dataclass(frozen=True)
class DailyOutcome:
    """The month's daily line-item partitions (one per OpenShift report type, else one)."""

    partitions: tuple[Path, ...]
    files: int
    rows: int
    bytes: int
    rows_by_table: dict[str, int]


@dataclass(frozen=True)
class MonthChecks:
    """One type's month totals reduced to the figures of the three asset checks."""

    #: Summary (and daily) cost, credit or usage sums equal the raw report's (cent, or 1e-6 hours).
    totals_match: bool
    summary_rows_outside_month: int
    #: Rows of the report that belong to another month and were left out (normal; for information).
    report_rows_outside_month: int
    counts_consistent: bool
    #: Headline sums for the summary's metadata.
    totals: dict[str, str]
    details: dict[str, Any]


@dataclass(frozen=True)
class ProviderSteps:
    summary_table: str
    #: Report files -> line items; None when line items arrive otherwise (OpenShift payloads).
    convert: Callable[[ReportFiles, Manifest, MonthPartition], Any] | None
    #: Line items -> daily line items; None when the summary reads the line items (Azure).
    build_daily: Callable[[MonthPartition], DailyOutcome] | None
    build_summary: Callable[[MonthPartition], WrittenTable]
    checks: Callable[[MonthPartition], MonthChecks]
    line_item_dirs: Callable[[MonthPartition], list[Path]]
    daily_dirs: Callable[[MonthPartition], list[Path]]


def _converter(convert_manifest: Callable[..., Any]) -> Callable[[ReportFiles, Manifest, MonthPartition], Any]:
    """A cloud type's ``convert_manifest`` as a step."""
    def convert(files: ReportFiles, manifest: Manifest, p: MonthPartition) -> Any:
        return convert_manifest(files, manifest, schema=p.schema, provider_uuid=p.provider_uuid, out_root=p.out_root)

    return convert


def _table(build: Callable[..., WrittenTable]) -> Callable[[MonthPartition], WrittenTable]:
    """A cloud type's ``build_daily`` or ``build_summary`` as a step."""
    def step(p: MonthPartition) -> WrittenTable:
        return build(**p.where, work_dir=p.work_dir)

    return step


def _one_daily(build: Callable[[MonthPartition], WrittenTable], table: str) -> Callable[[MonthPartition], DailyOutcome]:
    """A step writing one daily partition, as a :class:`DailyOutcome`."""
    def step(p: MonthPartition) -> DailyOutcome:
        result = build(p)
        return DailyOutcome((result.partition,), len(result.files), result.rows, result.bytes, {table: result.rows})

    return step


def _cloud_dirs(which: Callable[..., Path]) -> Callable[[MonthPartition], list[Path]]:
    def dirs(p: MonthPartition) -> list[Path]:
        return [which(p.out_root, p.schema, p.provider_type, p.provider_uuid, p.month)]

    return dirs


def _ocp_dirs(which: Callable[..., Path]) -> Callable[[MonthPartition], list[Path]]:
    def dirs(p: MonthPartition) -> list[Path]:
        return [which(p.out_root, p.schema, t.name, p.provider_uuid, p.month) for t in ocp.REPORT_TYPES]

    return dirs


def _aws_checks(p: MonthPartition) -> MonthChecks:
    t = aws.month_totals(**p.where)
    accounted = t.line_item_rows + t.rows_outside_month + t.rows_without_usage_start == t.source_rows
    return MonthChecks(
        totals_match=t.costs_match,
        summary_rows_outside_month=t.summary_rows_outside_month,
        report_rows_outside_month=t.rows_outside_month,
        counts_consistent=accounted and (t.line_item_rows == 0 or (t.daily_rows > 0 and t.summary_rows > 0)),
        totals={"unblended_cost": str(t.summary_unblended_cost), "blended_cost": str(t.summary_blended_cost)},
        details=t.metadata(),
    )


def _azure_checks(p: MonthPartition) -> MonthChecks:
    t = azure.month_totals(**p.where)
    accounted = t.line_item_rows + t.rows_outside_month + t.rows_without_usage_start == t.source_rows
    return MonthChecks(
        totals_match=t.costs_match,
        summary_rows_outside_month=t.summary_rows_outside_month,
        report_rows_outside_month=t.rows_outside_month,
        counts_consistent=accounted and (t.line_item_rows == 0 or t.summary_rows > 0),
        totals={"pretax_cost": str(t.summary_pretax_cost)},
        details=t.metadata(),
    )


def _gcp_checks(p: MonthPartition) -> MonthChecks:
    t = gcp.month_totals(**p.where)
    accounted = t.line_item_rows + t.rows_other_invoice_month + t.rows_without_usage_start == t.source_rows
    return MonthChecks(
        totals_match=t.costs_match,
        summary_rows_outside_month=t.summary_rows_other_invoice_month,
        report_rows_outside_month=t.rows_other_invoice_month,
        counts_consistent=accounted and (t.line_item_rows == 0 or (t.daily_rows > 0 and t.summary_rows > 0)),
        totals={"unblended_cost": str(t.summary_cost), "credit_amount": str(t.summary_credits)},
        details=t.metadata(),
    )


def _ocp_checks(p: MonthPartition) -> MonthChecks:
    t = ocp.month_totals(**p.where)
    return MonthChecks(
        totals_match=t.usage_matches,
        summary_rows_outside_month=t.summary_rows_outside_month,
        report_rows_outside_month=0,
        counts_consistent=t.line_item_rows == 0 or t.summary_rows > 0,
        totals={
            "pod_usage_cpu_core_hours": str(t.summary_pod_usage_cpu_core_hours),
            "pod_request_cpu_core_hours": str(t.summary_pod_request_cpu_core_hours),
            "pod_usage_memory_gigabyte_hours": str(t.summary_pod_usage_memory_gigabyte_hours),
        },
        details=t.metadata(),
    )


def _ocp_daily(p: MonthPartition) -> DailyOutcome:
    result = ocp.build_daily(**p.where, work_dir=p.work_dir)
    tables = result.tables.values()
    return DailyOutcome(
        tuple(t.partition for t in tables),
        sum(len(t.files) for t in tables),
        sum(t.rows for t in tables),
        sum(t.bytes for t in tables),
        {name: t.rows for name, t in result.tables.items()},
    )


def _ocp_summary(p: MonthPartition) -> WrittenTable:
    if not p.cluster_id:
        raise ValueError("the OpenShift provider has no cluster id")
    return ocp.build_summary(**p.where, cluster_id=p.cluster_id, work_dir=p.work_dir)


STEPS: dict[str, ProviderSteps] = {
    "AWS": ProviderSteps(
        summary_table=aws.SUMMARY_TABLE,
        convert=_converter(aws.convert_manifest),
        build_daily=_one_daily(_table(aws.build_daily), "aws"),
        build_summary=_table(aws.build_summary),
        checks=_aws_checks,
        line_item_dirs=_cloud_dirs(line_items_dir),
        daily_dirs=_cloud_dirs(daily_dir),
    ),
    "Azure": ProviderSteps(
        summary_table=azure.SUMMARY_TABLE,
        convert=_converter(azure.convert_manifest),
        build_daily=None,
        build_summary=_table(azure.build_summary),
        checks=_azure_checks,
        line_item_dirs=_cloud_dirs(line_items_dir),
        daily_dirs=lambda p: [],
    ),
    "GCP": ProviderSteps(
        summary_table=gcp.SUMMARY_TABLE,
        convert=_converter(gcp.convert_manifest),
        build_daily=_one_daily(_table(gcp.build_daily), "gcp"),
        build_summary=_table(gcp.build_summary),
        checks=_gcp_checks,
        line_item_dirs=_cloud_dirs(line_items_dir),
        daily_dirs=_cloud_dirs(daily_dir),
    ),
    "OCP": ProviderSteps(
        summary_table=ocp.SUMMARY_TABLE,
        convert=None,
        build_daily=_ocp_daily,
        build_summary=_ocp_summary,
        checks=_ocp_checks,
        line_item_dirs=_ocp_dirs(ocp_line_items_dir),
        daily_dirs=_ocp_dirs(ocp_daily_dir),
    ),
}
