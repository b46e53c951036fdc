"""The ``GCP`` type's reader: the Cloud Billing export table in BigQuery (private to :mod:`.gcp`).

The table is ``{project}.{dataset}.{table_id}`` (``dataset`` may be ``project:dataset``; without a
``table_id`` the dataset's table whose id contains ``gcp_billing_export_resource``, else
``gcp_billing_export``). It must be partitioned by ingestion day (``_PARTITIONTIME``).

A provider month is an *invoice* month M. Its manifest lists the partition days, from the first of
M - 1 to the end of M + 1, that hold rows of invoice month M, one report file per day
(``{table_id}/{YYYYMM}_{YYYY-MM-DD}.csv``) whose etag is the day's latest ``export_time``. The
assembly id is derived from every (day, latest export time), so a re-export of any day makes a new
assembly. A day's file is that day's rows of invoice month M exported up to its etag's time, read
page by page into CSV text with the columns of the export files (nested fields as JSON), so the
content of a (day, export time) pair never changes.

Every failure becomes a :class:`BigQueryError` whose message is fixed per kind (Koku's wording where
it has one) and may be shown to the user; the raw cause is logged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from koku_dagster.reports.errors import IngestError, ManifestError, ReportFileMissingError
from koku_dagster.reports.model import Manifest, ReportFile, key_parts

if TYPE_CHECKING:
    from google.cloud import bigquery
    from google.cloud.bigquery.schema import SchemaField

LOG = logging.getLogger(__name__)

#: Seconds per API request, and the longest wait (retries included) for one call or query.
REQUEST_TIMEOUT = 30.0
CALL_DEADLINE = 60.0
QUERY_TIMEOUT = 600.0
#: Rows per result page (one page in memory at a time), tables listed when discovering, days per manifest.
PAGE_ROWS = 10_000
MAX_TABLES = 1_000
MAX_DAYS = 100
#: CSV text kept in memory before it spills to a temporary file.
SPOOL_BYTES = 8 << 20
SCOPE = "https://www.googleapis.com/auth/bigquery.readonly"
RESOURCE_EXPORT = "gcp_billing_export_resource"
STANDARD_EXPORT = "gcp_billing_export"

#: The export's columns as the export files name them (the CSV header), in their order.
EXPORT_COLUMNS = (
    "billing_account_id", "service.id", "service.description", "sku.id", "sku.description", "usage_start_time",
    "usage_end_time", "project.id", "project.name", "project.labels", "project.ancestry_numbers", "labels",
    "system_labels", "location.location", "location.country", "location.region", "location.zone", "export_time",
    "cost", "currency", "currency_conversion_rate", "usage.amount", "usage.unit", "usage.amount_in_pricing_units",
    "usage.pricing_unit", "credits", "invoice.month", "cost_type", "resource.name", "resource.global_name",
)  # fmt: skip
JSON_COLUMNS = frozenset({"project.labels", "labels", "system_labels", "credits"})
#: Columns the standard (not resource-level) export lacks; read as empty.
OPTIONAL_COLUMNS = frozenset({"resource.name", "resource.global_name"})
REQUIRED_COLUMNS = tuple(c for c in EXPORT_COLUMNS if c not in OPTIONAL_COLUMNS)

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
_FILE = re.compile(r"^(\d{6})_(\d{4}-\d{2}-\d{2})\.csv$")

# Fixed messages, one per kind of failure.
INVALID_PROJECT = "Invalid project ID: a Google Cloud project ID has 6 to 30 lowercase letters, digits and hyphens."
INVALID_DATASET = "Invalid Dataset ID: the dataset must be 'dataset' or 'project:dataset' (letters, digits, '_')."
INVALID_TABLE = "Invalid table ID: a table ID has letters, digits, '_' and '-' only."
INVALID_SERVICE_ACCOUNT = "The service account JSON of the source is not a valid service account key."
DATASET_NOT_FOUND = "Unable to find dataset: {dataset} in project: {project}"
TABLE_NOT_FOUND = "Unable to find table: {table} in dataset: {dataset}"
TABLE_NOT_READY = (
    "Table ID not ready: no billing export table (gcp_billing_export_resource_* or gcp_billing_export_*) "
    "was found in the dataset yet."
)
MISSING_COLUMNS = "table missing expected columns: {columns}"
NOT_DAY_PARTITIONED = "table not correctly partitioned by day"
FORBIDDEN = "403 forbidden error: cost management is not allowed to read the billing export dataset."
CREDENTIALS = "The Google Cloud credentials of the source could not be used."
QUERY_FAILED = "table query check failed"
TIMED_OUT = "The BigQuery API did not answer in time."
UNREACHABLE = "The BigQuery API could not be reached."
BUCKET_MISSING = "Bucket required for storage only reports"


class BigQueryError(IngestError):
    """A BigQuery billing export cannot be read; the message is fixed per kind of failure."""


# --------------------------------------------------------------------------- where the table is


@dataclass(frozen=True)
class BillingLocation:
    """Where a source's billing export lives: jobs run in ``project``; the table in ``dataset_project``."""

    project: str
    dataset_project: str
    dataset: str
    table_id: str | None

    @property
    def dataset_ref(self) -> str:
        return f"{self.dataset_project}.{self.dataset}"


def billing_location(credentials: Mapping[str, Any], data_source: Mapping[str, Any]) -> BillingLocation:
    """The validated location of the export table; :class:`BigQueryError` when an identifier is invalid."""
    project = credentials.get("project_id")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise BigQueryError(INVALID_PROJECT)
    dataset = data_source.get("dataset")
    if not isinstance(dataset, str):
        raise BigQueryError(INVALID_DATASET)
    dataset_project, _, dataset_id = dataset.rpartition(":")
    if not _DATASET.match(dataset_id) or (dataset_project and not _PROJECT.match(dataset_project)):
        raise BigQueryError(INVALID_DATASET)
    table_id = data_source.get("table_id") or None
    if table_id is not None and (not isinstance(table_id, str) or not _TABLE.match(table_id)):
        raise BigQueryError(INVALID_TABLE)
    return BillingLocation(project, dataset_project or project, dataset_id, table_id)


def service_account_info(text: str) -> dict[str, Any]:
    """A service account key (JSON text) as a dict; :class:`BigQueryError` (never with its content) if invalid."""
    try:
        info = json.loads(text)
    except ValueError:
        raise BigQueryError(INVALID_SERVICE_ACCOUNT) from None
    needed = ("client_email", "private_key", "token_uri")
    if (
        not isinstance(info, dict)
        or info.get("type") != "service_account"
        or not all(isinstance(info.get(k), str) and info[k] for k in needed)
    ):
        raise BigQueryError(INVALID_SERVICE_ACCOUNT)
    return info


# --------------------------------------------------------------------------- client and errors


def _credentials(service_account_json: str | None, endpoint: str | None) -> Any:
    """The source's service account, else none against an overridden endpoint (unless Application Default
    Credentials are configured), else Application Default Credentials."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account

    if service_account_json:
        info = service_account_info(service_account_json)
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        except (ValueError, KeyError, TypeError):
            raise BigQueryError(INVALID_SERVICE_ACCOUNT) from None
    if endpoint and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return AnonymousCredentials()
    with google_calls(CREDENTIALS):
        credentials, _ = google.auth.default(scopes=[SCOPE])
    return credentials


def make_client(location: BillingLocation, service_account_json: str | None, endpoint: str | None) -> bigquery.Client:
    """A BigQuery client running jobs in the source's project."""
    from google.cloud import bigquery

    options = {"api_endpoint": endpoint} if endpoint else None
    return bigquery.Client(
        project=location.project,
        credentials=_credentials(service_account_json, endpoint),
        client_options=options,
    )


def _message(exc: BaseException, not_found: str) -> str:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from requests import Timeout

    if isinstance(exc, api.RetryError) and exc.cause is not None:  # retried until the deadline: why
        return _message(exc.cause, not_found)
    kinds: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (api.NotFound, not_found),
        (api.Forbidden, FORBIDDEN),
        ((api.Unauthorized, auth.RefreshError, auth.DefaultCredentialsError), CREDENTIALS),
        (api.BadRequest, QUERY_FAILED),
        ((TimeoutError, Timeout, api.RetryError, api.DeadlineExceeded), TIMED_OUT),
    )
    return next((message for kind, message in kinds if isinstance(exc, kind)), UNREACHABLE)


@contextmanager
def google_calls(not_found: str) -> Iterator[None]:
    """Turns any failure of the Google libraries into :class:`BigQueryError` (``not_found`` for a 404)."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from requests import RequestException

    try:
        yield
    except (GoogleAPIError, GoogleAuthError, RequestException, TimeoutError) as exc:
        message = _message(exc, not_found)
        LOG.warning("BigQuery call failed (%s): %s: %.500s", message, type(exc).__name__, exc)
        raise BigQueryError(message) from None


def _retry() -> Any:
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(CALL_DEADLINE)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ExportTable:
    """A checked billing export table and the SELECT list of its export columns."""

    full_id: str
    table_id: str
    select: str


def column_paths(schema: list[SchemaField]) -> set[str]:
    """Top-level column names and ``record.field`` paths of non-repeated records."""
    paths: set[str] = set()
    for field in schema:
        paths.add(field.name)
        if field.field_type in ("RECORD", "STRUCT") and field.mode != "REPEATED":
            paths |= {f"{field.name}.{sub.name}" for sub in field.fields}
    return paths


def _expression(path: str, present: set[str]) -> str:
    if path not in present:
        return "NULL"
    column = ".".join(f"`{part}`" for part in path.split("."))
    return f"TO_JSON_STRING({column})" if path in JSON_COLUMNS else column


def select_list(present: set[str]) -> str:
    """The export columns in :data:`EXPORT_COLUMNS` order (JSON text for nested ones), then the partition day."""
    columns = [f"{_expression(path, present)} AS c{i}" for i, path in enumerate(EXPORT_COLUMNS)]
    return ", ".join([*columns, "DATE(_PARTITIONTIME) AS partition_date"])


def discover_table(client: bigquery.Client, location: BillingLocation) -> str:
    """The dataset's resource-level export table, else its standard one (first by name; at most
    :data:`MAX_TABLES` tables are looked at)."""
    not_found = DATASET_NOT_FOUND.format(dataset=location.dataset, project=location.dataset_project)
    with google_calls(not_found):
        listing = client.list_tables(
            location.dataset_ref, max_results=MAX_TABLES, timeout=REQUEST_TIMEOUT, retry=_retry()
        )
        names = [t.table_id for t in itertools.islice(listing, MAX_TABLES) if _TABLE.match(t.table_id or "")]
    for marker in (RESOURCE_EXPORT, STANDARD_EXPORT):
        found = sorted(n for n in names if marker in n)
        if found:
            return found[0]
    raise BigQueryError(TABLE_NOT_READY)


def open_table(client: bigquery.Client, location: BillingLocation) -> ExportTable:
    """Check that the dataset and the table exist, that the table has the export's columns and is
    partitioned by ingestion day; the checked table."""
    with google_calls(DATASET_NOT_FOUND.format(dataset=location.dataset, project=location.dataset_project)):
        client.get_dataset(location.dataset_ref, timeout=REQUEST_TIMEOUT, retry=_retry())
    table_id = location.table_id or discover_table(client, location)
    full_id = f"{location.dataset_ref}.{table_id}"
    with google_calls(TABLE_NOT_FOUND.format(table=table_id, dataset=location.dataset)):
        table = client.get_table(full_id, timeout=REQUEST_TIMEOUT, retry=_retry())
    present = column_paths(list(table.schema))
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise BigQueryError(MISSING_COLUMNS.format(columns=", ".join(missing)))
    partitioning = table.time_partitioning
    if partitioning is None or partitioning.type_ != "DAY" or partitioning.field is not None:
        raise BigQueryError(NOT_DAY_PARTITIONED)
    return ExportTable(full_id, table_id, select_list(present))


def _query(client: bigquery.Client, sql: str, params: list[Any]) -> Any:
    """Run a query; its RowIterator (pages of :data:`PAGE_ROWS` rows)."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=params)
    with google_calls(QUERY_FAILED):
        job = client.query(sql, job_config=config, timeout=REQUEST_TIMEOUT, retry=_retry())
        return job.result(page_size=PAGE_ROWS, timeout=QUERY_TIMEOUT, retry=_retry())


# --------------------------------------------------------------------------- days and their rows


def month_window(month: date) -> tuple[datetime, datetime]:
    """The partition days that may hold rows of invoice month ``month``: the first of M - 1 up to the end of M + 1."""
    start = (month.replace(day=1) - timedelta(days=1)).replace(day=1)
    end = (month.replace(day=1) + timedelta(days=62)).replace(day=1)
    return datetime(start.year, start.month, 1, tzinfo=UTC), datetime(end.year, end.month, 1, tzinfo=UTC)


def partition_days(client: bigquery.Client, table: ExportTable, month: date) -> dict[date, datetime | None]:
    """Partition day -> latest ``export_time`` of the days holding rows of invoice month ``month``."""
    from google.cloud.bigquery import ScalarQueryParameter as P

    start, end = month_window(month)
    sql = (
        f"SELECT DATE(_PARTITIONTIME) AS day, MAX(`export_time`) AS exported FROM `{table.full_id}` "
        "WHERE _PARTITIONTIME >= @start AND _PARTITIONTIME < @end AND `invoice`.`month` = @month "
        f"GROUP BY day ORDER BY day LIMIT {MAX_DAYS + 1}"
    )
    params = [P("start", "TIMESTAMP", start), P("end", "TIMESTAMP", end), P("month", "STRING", f"{month:%Y%m}")]
    with google_calls(QUERY_FAILED):
        rows = [(r["day"], r["exported"]) for r in _query(client, sql, params)]
    if len(rows) > MAX_DAYS:
        raise ManifestError(f"more than {MAX_DAYS} partition days hold rows of invoice month {month:%Y-%m}")
    return dict(rows)


def file_key(table: ExportTable, month: date, day: date) -> str:
    return f"{table.table_id}/{month:%Y%m}_{day.isoformat()}.csv"


def parse_key(table: ExportTable, key: str) -> tuple[date, date]:
    """(invoice month, partition day) of a report file key of ``table``; :class:`ReportFileMissingError` if none."""
    parts = key_parts(key)
    match = _FILE.match(parts[-1])
    if len(parts) != 2 or parts[0] != table.table_id or match is None:
        raise ReportFileMissingError(key)
    try:
        month = datetime.strptime(match.group(1), "%Y%m").date()
        return month, date.fromisoformat(match.group(2))
    except ValueError:
        raise ReportFileMissingError(key) from None


def etag(table: ExportTable, day: date, exported: datetime | None) -> str:
    stamp = exported.isoformat() if exported else "-"
    return hashlib.sha256(f"{table.full_id}|{day.isoformat()}|{stamp}".encode()).hexdigest()[:32]


def manifest(table: ExportTable, month: date, days: dict[date, datetime | None]) -> Manifest:
    """The invoice month's manifest: one file per partition day; the assembly id from every (day, export time)."""
    signature = "|".join(f"{day.isoformat()}={etag(table, day, exported)}" for day, exported in sorted(days.items()))
    stamps = [e for e in days.values() if e is not None]
    return Manifest(
        assembly_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bigquery:{table.full_id}|{month:%Y%m}|{signature}")),
        billing_period_start=month.replace(day=1),
        report_name=table.table_id,
        manifest_key=table.full_id,
        export_datetime=max(stamps) if stamps else datetime.now(UTC),
        files=tuple(ReportFile(file_key(table, month, day)) for day in sorted(days)),
    )


def _number(value: float) -> str:
    """Shortest round-trip text, without an exponent (``nan``/``inf`` stay as they are and are refused later)."""
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def day_rows(
    client: bigquery.Client, table: ExportTable, month: date, day: date, exported: datetime | None
) -> BinaryIO:
    """The day's rows of invoice month ``month`` exported up to ``exported``, as CSV text in a spooled file."""
    from google.cloud.bigquery import ScalarQueryParameter as P

    params = [P("day", "TIMESTAMP", datetime(day.year, day.month, day.day, tzinfo=UTC))]
    params.append(P("month", "STRING", f"{month:%Y%m}"))
    until = ""
    if exported is not None:
        params.append(P("until", "TIMESTAMP", exported))
        until = " AND `export_time` <= @until"
    sql = (
        f"SELECT {table.select} FROM `{table.full_id}` "
        f"WHERE _PARTITIONTIME = @day AND `invoice`.`month` = @month{until}"
    )
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned open)
    try:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow([*EXPORT_COLUMNS, "partition_date"])
        with google_calls(QUERY_FAILED):
            for page in _query(client, sql, params).pages:
                writer.writerows([_cell(v) for v in row.values()] for row in page)
        text.flush()
        text.detach()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return cast(BinaryIO, spool)


# --------------------------------------------------------------------------- the reader


class BigQueryExports:
    """The report source of a ``GCP`` provider: its billing export table, one manifest per invoice month.

    The table is checked once per reader; the days of a month are looked up once per reader (the
    workflow builds a new reader for every step, so each step sees the table as it is then).
    """

    def __init__(self, client: bigquery.Client, location: BillingLocation) -> None:
        self._client = client
        self._location = location
        self._table: ExportTable | None = None
        self._days: dict[date, dict[date, datetime | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BigQueryExports({self._location.dataset_ref!r}, table_id={self._location.table_id!r})"

    def table(self) -> ExportTable:
        with self._lock:
            if self._table is None:
                self._table = open_table(self._client, self._location)
            return self._table

    def _month_days(self, month: date) -> dict[date, datetime | None]:
        table = self.table()
        with self._lock:
            known = self._days.get(month)
        if known is None:
            known = partition_days(self._client, table, month)
            with self._lock:
                self._days[month] = known
        return known

    def find_manifest(self, month: date) -> Manifest | None:
        start = month.replace(day=1)
        days = self._month_days(start)
        return manifest(self.table(), start, days) if days else None

    def _exported(self, key: str) -> tuple[date, date, datetime | None]:
        month, day = parse_key(self.table(), key)
        days = self._month_days(month)
        if day not in days:
            raise ReportFileMissingError(key)
        return month, day, days[day]

    def etag(self, key: str) -> str:
        _, day, exported = self._exported(key)
        return etag(self.table(), day, exported)

    def open_file(self, key: str) -> BinaryIO:
        month, day, exported = self._exported(key)
        return day_rows(self._client, self.table(), month, day, exported)
