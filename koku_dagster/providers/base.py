"""The interface every provider type implements, and the value types the types and the workflow share.

A provider type (:class:`ProviderType`) knows everything about one kind of provider: its Platform
Sources names, credential and billing shapes and readiness rules, where its reports come from, how
they become line items, daily line items and a summary, and which totals its checks compare. The
registry in :mod:`koku_dagster.providers` maps type names to them; see ``docs/`` for the flows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from koku_dagster.reports.csv_parquet import CsvTable, convert_files, footer_stats, safe_stem
from koku_dagster.reports.errors import IngestError
from koku_dagster.reports.model import Manifest, ReportFiles, ReportSource
from koku_dagster.reports.month_tables import build_from
from koku_dagster.reports.months import month_bounds
from koku_dagster.reports.paths import daily_dir, line_items_dir, parquet_files, summary_dir
from koku_dagster.reports.results import CostTotals, FileStats, LineItemsResult, TableResult

SQL_DIR = Path(__file__).parent / "sql"
LOCAL_SUFFIX = "-local"

#: Builds the S3 client of an AWS provider: (role ARN, external id, bucket region) -> boto3 S3 client.
S3ClientFactory = Callable[[str, str | None, str | None], Any]


@dataclass(frozen=True)
class CloudEndpoints:
    """Where the cloud APIs answer (public clouds by default; overridden for other clouds and tests)."""

    azure_authority_host: str = "https://login.microsoftonline.com"
    azure_management_url: str = "https://management.azure.com"
    #: Blob Storage account URL; ``{account}`` stands for the source's storage account.
    azure_blob_url: str = "https://{account}.blob.core.windows.net"
    #: BigQuery API endpoint; None for Google's (with credentials), else requests go without credentials.
    gcp_bigquery_url: str | None = None


@dataclass(frozen=True)
class ReportAccess:
    """How a provider type reaches its reports: the local bucket roots, an S3 client factory, cloud endpoints."""

    local_roots: tuple[Path, ...]
    s3_client: S3ClientFactory
    endpoints: CloudEndpoints = field(default_factory=CloudEndpoints)


def load_sql(name: str) -> str:
    """The text of ``providers/sql/{name}.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


class CredentialsError(Exception):
    """What Platform Sources holds for a source does not make complete credentials."""


class Unreachable(Exception):
    """A source's reports cannot be reached. The message is fixed per kind of failure and shown to the user,
    so it never carries raw error text (the raw cause goes to the log only)."""


class SettingsError(Exception):
    """A source's credentials or billing source cannot back a provider as they stand (the user must fix them)."""


@dataclass(frozen=True)
class ProviderContext:
    """One provider as the ingestion steps see it (read from the application tables)."""

    uuid: str
    name: str
    type: str
    schema: str
    credentials: dict[str, Any]
    data_source: dict[str, Any]
    setup_complete: bool
    active: bool
    paused: bool

    @property
    def storage_type(self) -> str:
        """The type in object-store paths (``AWS-local`` is filed as ``AWS``)."""
        return self.type.removesuffix(LOCAL_SUFFIX)

    def __repr__(self) -> str:  # credentials stay out of reprs and tracebacks
        return f"ProviderContext(uuid={self.uuid!r}, type={self.type!r}, schema={self.schema!r})"


@dataclass(frozen=True)
class CredentialFetch:
    """What the sources integration fetches from Platform Sources to build a type's credentials."""

    #: Only the source's ``source_ref`` (no authentication record).
    source_ref: bool = False
    #: When to fetch the secret (internal API): never, always, or only when the username is empty.
    password: Literal["never", "always", "without_username"] = "never"
    #: Whether the cost-management application's ``extra`` is needed.
    application: bool = False


@dataclass(frozen=True)
class CredentialInputs:
    """What Platform Sources told about a source's credentials, as :class:`CredentialFetch` asked."""

    source_ref: str | None = None
    username: str | None = None
    password: str | None = None
    auth_extra: Mapping[str, Any] = field(default_factory=dict)
    application_extra: Mapping[str, Any] = field(default_factory=dict)


LOCAL_ROOT_MESSAGE = "The local bucket path must be a folder under an allowed local bucket root, not the root itself."


def resolve_local_directory(path_text: str, roots: tuple[Path, ...]) -> Path:
    """The directory a local source may read, or :class:`SettingsError`.

    Refuses relative paths, ``..`` components, a root itself and anything that resolves (after
    symlinks) outside every allowed root.
    """
    if not isinstance(path_text, str) or not path_text or "\x00" in path_text:
        raise SettingsError("The local bucket path is empty or invalid.")
    raw = Path(path_text)
    if not raw.is_absolute() or ".." in raw.parts:
        raise SettingsError("The local bucket path must be absolute and must not contain '..'.")
    resolved = raw.resolve()
    roots = tuple(root.resolve() for root in roots)
    if resolved in roots:  # a root holds every other source's folders
        raise SettingsError(LOCAL_ROOT_MESSAGE)
    if not any(root in resolved.parents for root in roots):
        raise SettingsError("The local bucket path is outside the allowed local bucket roots.")
    if not resolved.is_dir():
        raise SettingsError("The local bucket directory does not exist.")
    return resolved


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
        return {
            "schema": self.schema,
            "provider_uuid": self.provider_uuid,
            "month": self.month,
            "out_root": self.out_root,
        }


class WrittenTable(Protocol):
    """A derived partition as written (daily line items or a summary)."""

    @property
    def partition(self) -> Path: ...

    @property
    def files(self) -> tuple[Path, ...]: ...

    @property
    def rows(self) -> int: ...

    @property
    def bytes(self) -> int: ...


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
class ProviderType(ABC):
    """Everything about one provider type (``AWS``, ``AWS-local``, ...); one instance per type name."""

    name: str
    #: Platform Sources source type name (``amazon``, ``amazon-local``, ...).
    source_type_name: str
    #: ``data_source`` keys copied from the application's ``extra``: required ones, then optional ones.
    required_billing_keys: tuple[str, ...]
    optional_billing_keys: tuple[str, ...]
    #: The ``data_source`` key naming the directory a ``-local`` type reads (None: not local).
    local_directory_key: str | None = None
    #: Whether its reports are polled by the hourly schedule (else its data is pushed or not readable yet).
    polled: bool = False

    #: The type as filed in paths and its Platform Sources authentication type.
    family: ClassVar[str]
    cost_authtype: ClassVar[str]
    credential_fetch: ClassVar[CredentialFetch]
    summary_table: ClassVar[str]
    #: Whether line items come from report files (OpenShift payloads write their own).
    reads_reports: ClassVar[bool] = True

    @abstractmethod
    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        """``authentication.credentials`` from what Platform Sources holds; :class:`CredentialsError` if incomplete."""

    def settings_complete(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> bool:
        """Koku's per-type "settings ready" screen (without the common conditions)."""
        return bool(credentials) and bool(data_source)

    def check_settings(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> None:  # noqa: B027
        """Structural checks of the type's settings; :class:`SettingsError` when one fails (none by default)."""

    def validate_settings(
        self, credentials: dict[str, Any], data_source: dict[str, Any], local_roots: tuple[Path, ...]
    ) -> None:
        """Whether the settings can back a provider; :class:`SettingsError` if not (local directories included)."""
        self.check_settings(credentials, data_source)
        if self.local_directory_key is not None:
            resolve_local_directory(data_source.get(self.local_directory_key, ""), local_roots)

    def local_directory(self, ctx: ProviderContext, local_roots: tuple[Path, ...]) -> Path:
        """The directory a ``-local`` provider reads; :class:`IngestError` when it is not allowed."""
        try:
            return resolve_local_directory(ctx.data_source.get(self.local_directory_key or "", ""), local_roots)
        except SettingsError as exc:
            raise IngestError(str(exc)) from None

    def check_reachable(self, ctx: ProviderContext, access: ReportAccess) -> None:
        """Whether the source's reports can be reached now (Koku's ``cost_usage_source_ready``).

        Raises :class:`Unreachable` with the fixed message of the failure's kind. Every call has a timeout.
        Local types: the folder is allowed and readable; types without reports (OpenShift) always pass.
        """
        if self.local_directory_key is None:
            return
        try:
            folder = self.local_directory(ctx, access.local_roots)
            next(folder.iterdir(), None)
        except (IngestError, OSError):
            raise Unreachable("The local folder of the source cannot be read.") from None

    def report_source(self, ctx: ProviderContext, access: ReportAccess) -> ReportSource:
        """The reader of a provider's cost reports; :class:`IngestError` when it cannot be built."""
        raise IngestError(f"reading {self.name} reports is not available")

    @abstractmethod
    def convert(self, files: ReportFiles, manifest: Manifest, p: MonthPartition) -> LineItemsResult:
        """Report files -> the month's line items (replaced whole)."""

    @property
    def has_daily_table(self) -> bool:
        """Whether line items are aggregated into daily line items (else the summary reads the line items)."""
        return True

    @abstractmethod
    def daily(self, p: MonthPartition) -> DailyOutcome:
        """Line items -> daily line items (only when :attr:`has_daily_table`)."""

    @abstractmethod
    def summary(self, p: MonthPartition) -> WrittenTable:
        """The month of the type's summary table."""

    @abstractmethod
    def checks(self, p: MonthPartition) -> MonthChecks:
        """The month's totals reduced to the figures of the three asset checks."""

    @abstractmethod
    def line_item_dirs(self, p: MonthPartition) -> list[Path]:
        """The month's line-item partitions."""

    @abstractmethod
    def daily_dirs(self, p: MonthPartition) -> list[Path]:
        """The month's daily line-item partitions."""


@dataclass(frozen=True)
class CloudType(ProviderType):
    """A cloud type: CSV reports -> line items (:attr:`TABLE`) -> optional daily table -> summary.

    The steps are the same for every cloud; the class constants say which table, SQL and inputs.
    """

    TABLE: ClassVar[type[CsvTable]]
    #: Daily line-item SQL; None when the summary reads the line items (Azure).
    DAILY_SQL: ClassVar[str | None] = None
    #: Whether the daily and summary SQL take the month's bounds (``$month_start``, ``$month_end``).
    MONTH_BOUNDS: ClassVar[bool] = False

    @staticmethod
    def stem(name: str) -> str:
        """The line-item file name (without ``.parquet``) of a report file."""
        return safe_stem(name)

    def convert_manifest(
        self,
        files: ReportFiles,
        manifest: Manifest,
        *,
        schema: str,
        provider_uuid: str,
        out_root: Path,
        max_workers: int = 2,
    ) -> LineItemsResult:
        """Convert every report file of ``manifest`` into the month's line-item partition, replacing what was there."""
        partition = line_items_dir(out_root, schema, self.family, provider_uuid, manifest.billing_period_start)
        return convert_files(files, manifest, partition, self.TABLE, stem=self.stem, max_workers=max_workers)

    def _bounds(self, month: date) -> dict[str, Any]:
        return month_bounds(month) if self.MONTH_BOUNDS else {}

    def build_daily(
        self, *, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path
    ) -> TableResult:
        """Aggregate the month's line items per day (and resource, tags, ...) into the daily partition."""
        if self.DAILY_SQL is None:
            raise ValueError(f"{self.name} has no daily line items")
        return build_from(
            load_sql(self.DAILY_SQL),
            line_items_dir(out_root, schema, self.family, provider_uuid, month),
            "line_item_files",
            self._bounds(month),
            daily_dir(out_root, schema, self.family, provider_uuid, month),
            month,
            work_dir,
        )

    def build_summary(
        self, *, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path
    ) -> TableResult:
        """Compute the month of the type's summary table from its daily (else line-item) partition."""
        if self.DAILY_SQL is None:
            inputs, files_param = line_items_dir(out_root, schema, self.family, provider_uuid, month), "line_item_files"
        else:
            inputs, files_param = daily_dir(out_root, schema, self.family, provider_uuid, month), "daily_files"
        return build_from(
            load_sql(self.summary_table),
            inputs,
            files_param,
            {"source_uuid": provider_uuid} | self._bounds(month),
            summary_dir(out_root, self.summary_table, provider_uuid, month),
            month,
            work_dir,
        )

    def convert(self, files: ReportFiles, manifest: Manifest, p: MonthPartition) -> LineItemsResult:
        return self.convert_manifest(
            files, manifest, schema=p.schema, provider_uuid=p.provider_uuid, out_root=p.out_root
        )

    @property
    def has_daily_table(self) -> bool:
        return self.DAILY_SQL is not None

    def daily(self, p: MonthPartition) -> DailyOutcome:
        result = self.build_daily(**p.where, work_dir=p.work_dir)
        rows = {self.family.lower(): result.rows}
        return DailyOutcome((result.partition,), len(result.files), result.rows, result.bytes, rows)

    def summary(self, p: MonthPartition) -> WrittenTable:
        return self.build_summary(**p.where, work_dir=p.work_dir)

    def line_item_dirs(self, p: MonthPartition) -> list[Path]:
        return [line_items_dir(p.out_root, p.schema, self.family, p.provider_uuid, p.month)]

    def daily_dirs(self, p: MonthPartition) -> list[Path]:
        if self.DAILY_SQL is None:
            return []
        return [daily_dir(p.out_root, p.schema, self.family, p.provider_uuid, p.month)]

    @abstractmethod
    def month_totals(self, *, schema: str, provider_uuid: str, month: date, out_root: Path) -> CostTotals:
        """Counts and sums of every step of one month, for the checks."""

    def checks(self, p: MonthPartition) -> MonthChecks:
        t = self.month_totals(**p.where)
        return MonthChecks(
            totals_match=t.costs_match,
            summary_rows_outside_month=t.summary_rows_outside_month,
            report_rows_outside_month=t.rows_left_out,
            counts_consistent=t.counts_consistent,
            totals=t.headline(),
            details=t.metadata(),
        )

    def line_item_stats(self, *, schema: str, provider_uuid: str, month: date, out_root: Path) -> tuple[int, FileStats]:
        """(rows, conversion figures) of the month's line items, from their footers."""
        return footer_stats(parquet_files(line_items_dir(out_root, schema, self.family, provider_uuid, month)))
