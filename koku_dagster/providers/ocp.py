"""OCP (OpenShift): usage payloads pushed by the cost operator, for one cluster (provider) and month.

Steps: :func:`convert_payload` (a payload's CSVs -> per-day line-item Parquet, per report type) ->
:func:`build_daily` (daily line items per report type) -> :func:`build_summary`
(``reporting_ocpusagelineitem_daily_summary``) -> :func:`month_totals` (figures for asset checks).
:data:`OCP` is the provider type: not polled, its line items come from payloads (``uploads``).

No double counting. Line items are kept as one file per report type x day x payload
(``{day}_{payload uuid}.parquet``) whose footer records the hours of that day it covers (distinct
``interval_start`` hours over all the payload's files of that type). For each (report type, day) only
one payload's file is kept: a new payload's day replaces the kept one when it covers MORE hours (or
when it is the same payload, re-run); with equal or fewer hours it is skipped as already loaded
(Koku's ``reportnumhours`` rule). Each month partition is rewritten whole via
:func:`~koku_dagster.reports.paths.replacing` (kept files are hard-linked into the new partition), so
the daily and summary steps, which read every file of the month, never see one hour twice.
"""

from __future__ import annotations

import calendar
import json
import os
import tempfile
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koku_dagster.providers.base import (
    CredentialFetch,
    CredentialInputs,
    CredentialsError,
    DailyOutcome,
    MonthChecks,
    MonthPartition,
    ProviderType,
    SettingsError,
    WrittenTable,
    load_sql,
)
from koku_dagster.providers.ocp_payload import PayloadManifest
from koku_dagster.reports import duck
from koku_dagster.reports.csv_parquet import (
    NUMBER,
    TIMESTAMP_TYPE,
    OpenFile,
    blank_to_null,
    column_position,
    distinct_map,
    exact_sum,
    read_header,
    record_batches,
)
from koku_dagster.reports.errors import IngestError, ReportFormatError
from koku_dagster.reports.model import Manifest, ReportFiles
from koku_dagster.reports.month_tables import column_sums, rows_outside_month
from koku_dagster.reports.paths import ocp_daily_dir, ocp_line_items_dir, parquet_files, replacing, summary_dir
from koku_dagster.reports.results import LineItemsResult, TableResult, totals_metadata

DAILY_SQL = "ocp_line_items_daily"
SUMMARY_TABLE = "reporting_ocpusagelineitem_daily_summary"
FOOTER_KEY = b"koku_dagster.ocp_day"
TIMESTAMPS = ("report_period_start", "report_period_end", "interval_start", "interval_end")
HOUR_TOLERANCE = Decimal("0.000001")
#: Worker threads typing a report type's CSV batches (and batches typed ahead of the writer).
PREPARE_THREADS = 2
#: Day files open for writing at once per report type; a day evicted and seen again gets another
#: segment, merged when the type is closed (rows sorted by day, as the operator writes them, never do).
MAX_OPEN_WRITERS = 32
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ReportType:
    """One operator report type: its columns (fixed Parquet schema) and its daily grouping."""

    name: str
    strings: tuple[str, ...]
    numbers: tuple[str, ...]
    labels: tuple[str, ...]
    daily_keys: tuple[str, ...]
    optional: frozenset[str] = frozenset()
    extra_sums: frozenset[str] = frozenset()

    @property
    def required(self) -> frozenset[str]:
        """Columns a header must hold to be of this type."""
        return frozenset(TIMESTAMPS + self.strings + self.numbers + self.labels) - self.optional

    @property
    def summed(self) -> tuple[str, ...]:
        """Numeric columns summed per day (per-interval quantities); the others are maxed."""
        return tuple(n for n in self.numbers if n.endswith("_seconds") or n in self.extra_sums)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [(n, TIMESTAMP_TYPE) for n in TIMESTAMPS]
            + [(n, pa.string()) for n in self.strings]
            + [(n, pa.float64()) for n in self.numbers]
            + [(n, pa.string()) for n in self.labels]
        )

    def daily_query(self) -> str:
        """The daily aggregation (``sql/ocp_line_items_daily.sql``) for this type."""
        columns = list(self.daily_keys)
        columns += [f"max({n}) AS {n}" for n in self.strings + self.labels if n not in self.daily_keys]
        columns += [f"{'sum' if n in self.summed else 'max'}({n}) AS {n}" for n in self.numbers]
        return load_sql(DAILY_SQL).replace("{columns}", ",\n    ".join(columns))


POD_USAGE = ReportType(
    "pod_usage",
    strings=("pod", "namespace", "node", "resource_id", "node_role"),
    numbers=(
        "pod_usage_cpu_core_seconds",
        "pod_request_cpu_core_seconds",
        "pod_limit_cpu_core_seconds",
        "pod_usage_memory_byte_seconds",
        "pod_request_memory_byte_seconds",
        "pod_limit_memory_byte_seconds",
        "node_capacity_cpu_cores",
        "node_capacity_cpu_core_seconds",
        "node_capacity_memory_bytes",
        "node_capacity_memory_byte_seconds",
    ),
    labels=("pod_labels",),
    daily_keys=("namespace", "node", "pod", "pod_labels"),
    optional=frozenset({"node_role"}),
)
STORAGE_USAGE = ReportType(
    "storage_usage",
    strings=(
        "namespace",
        "pod",
        "node",
        "persistentvolumeclaim",
        "persistentvolume",
        "storageclass",
        "csi_driver",
        "csi_volume_handle",
    ),
    numbers=(
        "persistentvolumeclaim_capacity_bytes",
        "persistentvolumeclaim_capacity_byte_seconds",
        "volume_request_storage_byte_seconds",
        "persistentvolumeclaim_usage_byte_seconds",
    ),
    labels=("persistentvolume_labels", "persistentvolumeclaim_labels"),
    daily_keys=(
        "namespace",
        "node",
        "pod",
        "persistentvolumeclaim",
        "persistentvolume",
        "storageclass",
        "csi_driver",
        "csi_volume_handle",
        "persistentvolume_labels",
        "persistentvolumeclaim_labels",
    ),
    optional=frozenset({"node", "csi_driver", "csi_volume_handle"}),
)
NODE_LABELS = ReportType("node_labels", ("node",), (), ("node_labels",), ("node", "node_labels"))
NAMESPACE_LABELS = ReportType(
    "namespace_labels", ("namespace",), (), ("namespace_labels",), ("namespace", "namespace_labels")
)
_VM_NEWER = (
    "vm_guest_os_arch",
    "vm_guest_os_name",
    "vm_guest_os_version",
    "vm_device",
    "vm_volume_mode",
    "vm_persistentvolumeclaim_name",
    "vm_disk_allocated_size_byte_seconds",
)
VM_USAGE = ReportType(
    "vm_usage",
    strings=(
        "node",
        "resource_id",
        "namespace",
        "vm_name",
        "vm_instance_type",
        "vm_os",
        "vm_guest_os_arch",
        "vm_guest_os_name",
        "vm_guest_os_version",
        "vm_device",
        "vm_volume_mode",
        "vm_persistentvolumeclaim_name",
    ),
    numbers=(
        "vm_uptime_total_seconds",
        "vm_cpu_limit_cores",
        "vm_cpu_limit_core_seconds",
        "vm_cpu_request_cores",
        "vm_cpu_request_core_seconds",
        "vm_cpu_request_sockets",
        "vm_cpu_request_socket_seconds",
        "vm_cpu_request_threads",
        "vm_cpu_request_thread_seconds",
        "vm_cpu_usage_total_seconds",
        "vm_memory_limit_bytes",
        "vm_memory_limit_byte_seconds",
        "vm_memory_request_bytes",
        "vm_memory_request_byte_seconds",
        "vm_memory_usage_byte_seconds",
        "vm_disk_allocated_size_byte_seconds",
    ),
    labels=("vm_labels",),
    daily_keys=("namespace", "node", "vm_name", "vm_labels"),
    optional=frozenset(_VM_NEWER),
)
GPU_USAGE = ReportType(
    "gpu_usage",
    strings=(
        "node",
        "namespace",
        "pod",
        "gpu_uuid",
        "gpu_model_name",
        "gpu_vendor_name",
        "mig_instance_id",
        "mig_profile",
        "mig_strategy",
    ),
    numbers=("gpu_memory_capacity_mib", "gpu_pod_uptime"),
    labels=(),
    daily_keys=("node", "namespace", "pod", "gpu_uuid", "mig_instance_id"),
    optional=frozenset({"mig_instance_id", "mig_profile", "mig_strategy"}),
    extra_sums=frozenset({"gpu_pod_uptime"}),
)
#: In Koku's detection order: the first type whose required columns a header holds wins.
REPORT_TYPES = (STORAGE_USAGE, POD_USAGE, NODE_LABELS, NAMESPACE_LABELS, VM_USAGE, GPU_USAGE)


def detect_report_type(header: Iterable[str], file_name: str) -> ReportType:
    """The report type of a CSV from its column names; :class:`ReportFormatError` names the file if none fits."""
    columns = {h.strip().lower() for h in header}
    for report_type in REPORT_TYPES:
        if report_type.required <= columns:
            return report_type
    raise ReportFormatError(f"{file_name}: not an OpenShift report of a known type")


# --- conversion -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayFile:
    """One report type's rows of one day from one payload, and what became of it."""

    report_type: str
    day: date
    hours: int
    rows: int
    path: Path
    #: ``written`` (new day), ``replaced`` (more hours than the kept file) or ``skipped`` (already loaded).
    outcome: str


@dataclass(frozen=True)
class PayloadResult:
    """The line items a payload brought, per report type and day."""

    manifest_uuid: str
    cluster_id: str
    report_types: dict[str, str]
    days: tuple[DayFile, ...]
    source_rows: int
    rows_without_interval_start: int
    uncast_cells: int
    empty_files: tuple[str, ...] = ()
    #: Rows left out because their day lies outside the months kept (retention window, up to now).
    rows_outside_window: int = 0

    @property
    def days_covered(self) -> tuple[date, ...]:
        """Every day the payload holds rows for, whether kept or skipped."""
        return tuple(sorted({d.day for d in self.days}))

    @property
    def months_changed(self) -> tuple[date, ...]:
        """Months whose line items changed (to be re-summarised)."""
        return tuple(sorted({d.day.replace(day=1) for d in self.days if d.outcome != "skipped"}))

    def metadata(self) -> dict[str, Any]:
        outcomes = [d.outcome for d in self.days]
        return {
            "manifest_uuid": self.manifest_uuid,
            "cluster_id": self.cluster_id,
            "files": len(self.report_types) + len(self.empty_files),
            "days_covered": [d.isoformat() for d in self.days_covered],
            "months_changed": [m.isoformat() for m in self.months_changed],
            "day_files_written": outcomes.count("written"),
            "day_files_replaced": outcomes.count("replaced"),
            "day_files_skipped": outcomes.count("skipped"),
            "rows": sum(d.rows for d in self.days if d.outcome != "skipped"),
            "source_rows": self.source_rows,
            "rows_without_interval_start": self.rows_without_interval_start,
            "uncast_cells": self.uncast_cells,
            "rows_outside_window": self.rows_outside_window,
        }


@dataclass
class _DayWriter:
    """A Parquet file being written for one report type x day, with its hours and exact sums.

    ``writer`` writes the last of ``segments``; it is None while the day is evicted (closed).
    """

    writer: pq.ParquetWriter | None
    path: Path
    segments: list[Path] = field(default_factory=list)
    hours: set[int] = field(default_factory=set)
    rows: int = 0
    uncast_cells: int = 0
    sums: dict[str, Decimal] = field(default_factory=dict)


def _label_json(text: str | None) -> str:
    """``label_app:web|label_env:prod`` -> ``{"app":"web","env":"prod"}`` (items without ``:`` dropped)."""
    items: dict[str, str] = {}
    for item in (text or "").split("|"):
        key, sep, value = item.partition(":")
        if sep:
            items[key.removeprefix("label_")] = value
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def _labels(text: pa.Array) -> pa.Array:
    """Label strings as JSON text, each distinct value converted once."""
    return pc.fill_null(distinct_map(text, _label_json)[0], "{}")


def _timestamps(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``2024-01-01 00:00:00 +0000 UTC`` text as UTC timestamps, and a mask of unparseable cells.

    Each distinct text is parsed once (a report repeats the same few hours in every row).
    """
    encoded = pc.dictionary_encode(text)
    present = blank_to_null(encoded.dictionary)
    values = pc.strptime(
        pc.replace_substring_regex(present, r" UTC$", ""), "%Y-%m-%d %H:%M:%S %z", "us", error_is_null=True
    ).cast(TIMESTAMP_TYPE)
    invalid = pc.and_(pc.is_valid(present), pc.is_null(values))
    return pc.take(values, encoded.indices), pc.fill_null(pc.take(invalid, encoded.indices), False)


def _numbers(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(numeric text, float64, mask of non-numeric cells); empty and non-numeric cells become null."""
    present = blank_to_null(text)
    numeric = pc.if_else(pc.match_substring_regex(present, NUMBER), present, pa.scalar(None, pa.string()))
    return numeric, pc.cast(numeric, pa.float64()), pc.and_(pc.is_valid(present), pc.is_null(numeric))


@dataclass(frozen=True)
class _DayRows:
    """One batch's rows of one day, with their figures."""

    day: date
    rows: pa.Table
    uncast_cells: int
    hours: tuple[int, ...]
    sums: dict[str, Decimal]


@dataclass(frozen=True)
class MonthWindow:
    """Which months a payload may write: days outside ``manifest`` refuse the payload, days in it
    but outside ``kept`` (the retention window up to the current month) are left out."""

    manifest: frozenset[date]
    kept: frozenset[date]

    def admits(self, day: date, file_name: str) -> bool:
        month = day.replace(day=1)
        if month not in self.manifest:
            raise ReportFormatError(f"{file_name}: rows dated {day} lie outside the months of the manifest")
        return month in self.kept


@dataclass(frozen=True)
class _Batch:
    """A typed batch split by day (computed on a worker thread; written in order by the caller)."""

    source_rows: int
    no_start: int
    days: tuple[_DayRows, ...]


def _in_order(pool: ThreadPoolExecutor, fn: Callable[[_T], _R], items: Iterable[_T], ahead: int) -> Iterator[_R]:
    """``fn`` over ``items`` on ``pool``, at most ``ahead`` items ahead of the consumer; results in item order."""
    pending: deque[Future[_R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


class _TypeConverter:
    """Writes all of one payload's files of one report type into per-day Parquet files.

    Batches are typed and split by day on ``pool`` (pyarrow compute releases the GIL) while this
    thread reads the CSV and writes the day files, in the order of the rows.
    """

    def __init__(
        self, report_type: ReportType, manifest_uuid: str, out_dir: Path, pool: ThreadPoolExecutor, window: MonthWindow
    ) -> None:
        self.type = report_type
        self.manifest_uuid = manifest_uuid
        self.out_dir = out_dir
        self.pool = pool
        self.window = window
        self.days: dict[date, _DayWriter] = {}
        self.open: OrderedDict[date, _DayWriter] = OrderedDict()
        self.source_rows = self.no_start = self.outside_window = 0

    def add_file(self, path: Path) -> None:
        header = [h.strip().lower() for h in read_header(lambda: path.open("rb"), path.name)]
        position = {name: column_position(i) for i, name in reversed(list(enumerate(header)))}
        needed = [position[n] for n in self.type.schema.names if n in position]
        batches = record_batches(lambda: path.open("rb"), path.name, len(header), needed)
        for typed in _in_order(self.pool, lambda b: self._type_batch(b, position), batches, PREPARE_THREADS):
            self._store(typed, path.name)

    def _type_batch(self, batch: pa.RecordBatch, position: dict[str, str]) -> _Batch:
        n = batch.num_rows
        columns: dict[str, pa.Array] = {}
        bad = pa.repeat(False, n)
        numeric_text: dict[str, pa.Array] = {}
        for f in self.type.schema:
            text = batch.column(position[f.name]) if f.name in position else None
            if f.name in TIMESTAMPS:
                if text is None:
                    columns[f.name] = pa.nulls(n, TIMESTAMP_TYPE)
                    continue
                columns[f.name], invalid = _timestamps(text)
            elif f.type == pa.float64():
                if text is None:
                    columns[f.name] = pa.nulls(n, pa.float64())
                    continue
                numeric_text[f.name], columns[f.name], invalid = _numbers(text)
            elif f.name in self.type.labels:
                columns[f.name] = _labels(text) if text is not None else pa.repeat("{}", n)
                continue
            else:
                columns[f.name] = text if text is not None else pa.repeat("", n)
                continue
            bad = pc.add(pc.cast(bad, pa.int32()), pc.cast(invalid, pa.int32()))
        table = pa.Table.from_pydict(columns, schema=self.type.schema)
        start = columns["interval_start"]
        day_of_row = pc.cast(start, pa.date32())
        days = []
        for day in pc.unique(day_of_row.drop_null()).to_pylist():
            mask = pc.fill_null(pc.equal(day_of_row, pa.scalar(day, pa.date32())), False)
            rows = table.filter(mask)
            hours = pc.unique(pc.hour(rows.column("interval_start"))).to_pylist()
            sums = {
                name: exact_sum(pc.filter(numeric_text[name], mask))
                for name in self.type.summed
                if name in numeric_text
            }
            days.append(
                _DayRows(
                    day, rows, pc.sum(pc.filter(bad, mask)).as_py() or 0, tuple(h for h in hours if h is not None), sums
                )
            )
        return _Batch(n, start.null_count, tuple(days))

    def _store(self, batch: _Batch, file_name: str) -> None:
        self.source_rows += batch.source_rows
        self.no_start += batch.no_start
        for part in batch.days:
            if not self.window.admits(part.day, file_name):
                self.outside_window += part.rows.num_rows
                continue
            target = self._writer(part.day)
            assert target.writer is not None
            target.writer.write_table(part.rows)
            target.rows += part.rows.num_rows
            target.uncast_cells += part.uncast_cells
            target.hours.update(part.hours)
            for name, total in part.sums.items():
                target.sums[name] = target.sums.get(name, Decimal(0)) + total

    def _writer(self, day: date) -> _DayWriter:
        """The day's open writer (a new segment when the day was evicted), at most
        :data:`MAX_OPEN_WRITERS` open: the least recently used one is closed."""
        w = self.days.get(day)
        if w is None:
            path = self.out_dir / self.type.name / f"{day.isoformat()}_{self.manifest_uuid}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            w = self.days[day] = _DayWriter(None, path)
        if w.writer is None:
            segment = w.path.with_suffix(f".{len(w.segments)}.segment")
            w.writer = pq.ParquetWriter(segment, self.type.schema, compression="zstd")
            w.segments.append(segment)
        self.open[day] = w
        self.open.move_to_end(day)
        while len(self.open) > MAX_OPEN_WRITERS:
            _, evicted = self.open.popitem(last=False)
            assert evicted.writer is not None
            evicted.writer.close()
            evicted.writer = None
        return w

    def _finish(self, w: _DayWriter, footer: dict[str, Any]) -> None:
        """Write the day's file with its footer: its one segment renamed, or its segments merged."""
        meta = {FOOTER_KEY: json.dumps(footer)}
        if len(w.segments) == 1 and w.writer is not None:
            w.writer.add_key_value_metadata(meta)
            w.writer.close()
            os.replace(w.segments[0], w.path)
            return
        if w.writer is not None:
            w.writer.close()
        with pq.ParquetWriter(w.path, self.type.schema, compression="zstd") as out:
            for segment in w.segments:
                for batch in pq.ParquetFile(segment).iter_batches():
                    out.write_batch(batch)
                segment.unlink()
            out.add_key_value_metadata(meta)

    def close(self) -> list[tuple[date, _DayWriter]]:
        """Close every day file, recording its footer (payload, day, hours, rows, exact sums)."""
        for day, w in self.days.items():
            footer = {
                "manifest_uuid": self.manifest_uuid,
                "report_type": self.type.name,
                "day": day.isoformat(),
                "hours": len(w.hours),
                "rows": w.rows,
                "uncast_cells": w.uncast_cells,
                "sums": {k: str(v) for k, v in w.sums.items()},
            }
            self._finish(w, footer)
            w.writer = None
        self.open.clear()
        return sorted(self.days.items())


def _footer(path: Path) -> dict[str, Any]:
    return json.loads(pq.read_metadata(path).metadata[FOOTER_KEY])


def _install(
    report_type: ReportType,
    new: list[tuple[date, _DayWriter]],
    out_root: Path,
    schema: str,
    provider_uuid: str,
    manifest_uuid: str,
    prepare: Callable[[Path], object],
) -> list[DayFile]:
    """Apply the keep rule to a type's new day files, month by month, replacing each month partition."""
    results: list[DayFile] = []
    for month in sorted({day.replace(day=1) for day, _ in new}):
        partition = ocp_line_items_dir(out_root, schema, report_type.name, provider_uuid, month)
        prepare(partition)
        kept: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
        for path in parquet_files(partition):
            footer = _footer(path)
            kept.setdefault(footer["day"], []).append((path, footer))
        incoming: list[Path] = []
        for day, w in new:
            if day.replace(day=1) != month:
                continue
            old = kept.get(day.isoformat(), [])
            hours = len(w.hours)
            same_payload = any(f["manifest_uuid"] == manifest_uuid for _, f in old)
            if old and not same_payload and hours <= max(f["hours"] for _, f in old):
                results.append(DayFile(report_type.name, day, hours, w.rows, w.path, "skipped"))
                w.path.unlink()
                continue
            kept[day.isoformat()] = []
            incoming.append(w.path)
            results.append(
                DayFile(report_type.name, day, hours, w.rows, partition / w.path.name, "replaced" if old else "written")
            )
        if not incoming:
            continue
        with replacing(partition) as staging:
            for files in kept.values():
                for path, _ in files:
                    os.link(path, staging / path.name)
            for path in incoming:
                os.replace(path, staging / path.name)
    return results


def _opener(path: Path) -> OpenFile:
    """Opens ``path`` for reading bytes."""
    return lambda: path.open("rb")


def convert_payload(
    files: dict[str, Path],
    manifest: PayloadManifest,
    *,
    schema: str,
    provider_uuid: str,
    out_root: Path,
    kept_months: Collection[date] | None = None,
    prepare_partition: Callable[[Path], object] = lambda partition: None,
) -> PayloadResult:
    """Convert an extracted payload's CSVs into the line-item partitions of the months it covers.

    ``prepare_partition`` is called with each line-item partition before its kept files are read
    (an object store's mirror fetches it there: the months are known only from the rows).

    Each file's report type is detected from its header (an unknown one aborts the step before
    anything is written); header-less empty files are skipped. Rows are typed, label strings become
    JSON text, and rows are split by the day of ``interval_start`` into per-day files kept by the rule
    in the module docstring. Only the manifest's months are written, and of them only ``kept_months``
    when given (the retention window): a row of another month refuses the payload
    (:class:`ReportFormatError`), a row outside the window is left out and counted.
    """
    manifest_months = frozenset(manifest.months)
    kept = manifest_months if kept_months is None else manifest_months & frozenset(kept_months)
    window = MonthWindow(manifest_months, kept)
    types: dict[str, ReportType] = {}
    empty: list[str] = []
    for name, path in sorted(files.items()):
        header = read_header(_opener(path), name)
        if not header:
            empty.append(name)
            continue
        types[name] = detect_report_type(header, name)
    out_root.mkdir(parents=True, exist_ok=True)
    days: list[DayFile] = []
    source_rows = no_start = uncast = outside = 0
    with (
        tempfile.TemporaryDirectory(dir=out_root, prefix=".ocp-incoming-") as tmp,
        ThreadPoolExecutor(max_workers=PREPARE_THREADS, thread_name_prefix="ocp-convert") as pool,
    ):
        converted: list[tuple[ReportType, list[tuple[date, _DayWriter]]]] = []
        for report_type in REPORT_TYPES:
            names = [n for n, t in types.items() if t is report_type]
            if not names:
                continue
            converter = _TypeConverter(report_type, manifest.uuid, Path(tmp), pool, window)
            try:
                for name in names:
                    converter.add_file(files[name])
            finally:
                new = converter.close()
            source_rows += converter.source_rows
            no_start += converter.no_start
            outside += converter.outside_window
            uncast += sum(w.uncast_cells for _, w in new)
            converted.append((report_type, new))
        # Installed only once every file converted: a bad file leaves every partition as it was.
        for report_type, new in converted:
            days += _install(report_type, new, out_root, schema, provider_uuid, manifest.uuid, prepare_partition)
    pa.default_memory_pool().release_unused()
    return PayloadResult(
        manifest.uuid,
        manifest.cluster_id,
        {n: t.name for n, t in types.items()},
        tuple(days),
        source_rows,
        no_start,
        uncast,
        tuple(empty),
        outside,
    )


# --- daily line items and summary --------------------------------------------------------------


@dataclass(frozen=True)
class DailyResult:
    """The month's daily line-item partitions, per report type."""

    tables: dict[str, TableResult]

    def metadata(self) -> dict[str, Any]:
        return {f"{name}_rows": t.rows for name, t in self.tables.items()} | {
            "files": sum(len(t.files) for t in self.tables.values()),
            "bytes": sum(t.bytes for t in self.tables.values()),
        }


def _write(con: Any, query: str, params: dict[str, Any], partition: Path) -> TableResult:
    """Replace ``partition`` with the result of ``query`` as one Parquet file."""
    with replacing(partition) as staging:
        written = duck.copy_to_parquet(con, query, params, staging / "part-0.parquet")
    return TableResult(partition, (partition / written.path.name,), written.rows, written.bytes)


def _empty_line_items(report_type: ReportType, work_dir: Path) -> Path:
    """A zero-row line-item file of the type's schema, standing in for a month without such reports."""
    path = work_dir / f"empty-{report_type.name}.parquet"
    pq.write_table(report_type.schema.empty_table(), path)
    return path


def build_daily(*, schema: str, provider_uuid: str, month: date, out_root: Path, work_dir: Path) -> DailyResult:
    """Aggregate each report type's line items of the month per day into its daily partition.

    Every type gets a partition (zero rows when the month has none), so the summary can read them all.
    """
    tables = {}
    work_dir.mkdir(parents=True, exist_ok=True)
    with duck.connect(work_dir) as con:
        for report_type in REPORT_TYPES:
            inputs = parquet_files(ocp_line_items_dir(out_root, schema, report_type.name, provider_uuid, month))
            files = duck.literal_files(inputs or [_empty_line_items(report_type, work_dir)])
            partition = ocp_daily_dir(out_root, schema, report_type.name, provider_uuid, month)
            tables[report_type.name] = _write(con, report_type.daily_query(), {"line_item_files": files}, partition)
    return DailyResult(tables)


def build_summary(
    *, schema: str, provider_uuid: str, cluster_id: str, month: date, out_root: Path, work_dir: Path
) -> TableResult:
    """Compute ``reporting_ocpusagelineitem_daily_summary`` for the month (Pod and Storage rows).

    Reads the daily partitions written by :func:`build_daily` and the pod line items (node capacity).
    """

    def daily(report_type: ReportType) -> list[str]:
        files = parquet_files(ocp_daily_dir(out_root, schema, report_type.name, provider_uuid, month))
        if not files:
            raise FileNotFoundError(f"no daily {report_type.name} partition for {month:%Y-%m}: run build_daily first")
        return duck.literal_files(files)

    work_dir.mkdir(parents=True, exist_ok=True)
    pod_items = parquet_files(ocp_line_items_dir(out_root, schema, POD_USAGE.name, provider_uuid, month))
    params = {
        "pod_daily": daily(POD_USAGE),
        "storage_daily": daily(STORAGE_USAGE),
        "node_labels_daily": daily(NODE_LABELS),
        "namespace_labels_daily": daily(NAMESPACE_LABELS),
        "pod_items": duck.literal_files(pod_items or [_empty_line_items(POD_USAGE, work_dir)]),
        "cluster_id": cluster_id,
        "source_uuid": provider_uuid,
        "days_in_month": calendar.monthrange(month.year, month.month)[1],
    }
    partition = summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month)
    with duck.connect(work_dir) as con:
        return _write(con, load_sql(SUMMARY_TABLE), params, partition)


# --- checks ------------------------------------------------------------------------------------

_RAW_POD = (
    "pod_usage_cpu_core_seconds",
    "pod_request_cpu_core_seconds",
    "pod_usage_memory_byte_seconds",
    "pod_request_memory_byte_seconds",
)
_SUMMARY_POD = (
    "pod_usage_cpu_core_hours",
    "pod_request_cpu_core_hours",
    "pod_usage_memory_gigabyte_hours",
    "pod_request_memory_gigabyte_hours",
)
_TO_HOURS = (Decimal(3600), Decimal(3600), Decimal(3600 * 2**30), Decimal(3600 * 2**30))


@dataclass(frozen=True)
class MonthTotals:
    """Row counts and usage sums of one cluster month, for asset checks.

    ``raw_*`` are exact sums of the report text of the kept day files (from their footers).
    """

    line_item_rows: int
    pod_daily_rows: int
    summary_rows: int
    #: Summary rows whose ``usage_start`` is not in the month (must be 0).
    summary_rows_outside_month: int
    uncast_cells: int
    days_loaded: int
    raw_pod_usage_cpu_core_seconds: Decimal
    raw_pod_request_cpu_core_seconds: Decimal
    raw_pod_usage_memory_byte_seconds: Decimal
    raw_pod_request_memory_byte_seconds: Decimal
    summary_pod_usage_cpu_core_hours: Decimal
    summary_pod_request_cpu_core_hours: Decimal
    summary_pod_usage_memory_gigabyte_hours: Decimal
    summary_pod_request_memory_gigabyte_hours: Decimal

    @property
    def usage_matches(self) -> bool:
        """Summary core-hours and GiB-hours equal the raw seconds / 3600 (/ 2^30) within 1e-6."""
        raw = (getattr(self, f"raw_{c}") for c in _RAW_POD)
        summary = (getattr(self, f"summary_{c}") for c in _SUMMARY_POD)
        return all(abs(s - r / k) < HOUR_TOLERANCE for s, r, k in zip(summary, raw, _TO_HOURS, strict=True))

    def metadata(self) -> dict[str, Any]:
        return totals_metadata(self, usage_matches=self.usage_matches)


def month_totals(*, schema: str, provider_uuid: str, month: date, out_root: Path) -> MonthTotals:
    """Counts and exact usage sums of the line-item, daily and summary partitions of one cluster month."""
    footers = [
        _footer(p)
        for t in REPORT_TYPES
        for p in parquet_files(ocp_line_items_dir(out_root, schema, t.name, provider_uuid, month))
    ]
    pod = [f for f in footers if f["report_type"] == POD_USAGE.name]
    raw = [sum((Decimal(f["sums"].get(c, 0)) for f in pod), start=Decimal(0)) for c in _RAW_POD]
    pod_daily = parquet_files(ocp_daily_dir(out_root, schema, POD_USAGE.name, provider_uuid, month))
    pod_daily_rows, _ = column_sums(pod_daily, [_RAW_POD[0]])
    summary_files = parquet_files(summary_dir(out_root, SUMMARY_TABLE, provider_uuid, month))
    summary_rows, summary = column_sums(summary_files, list(_SUMMARY_POD))
    return MonthTotals(
        line_item_rows=sum(f["rows"] for f in footers),
        pod_daily_rows=pod_daily_rows,
        summary_rows=summary_rows,
        summary_rows_outside_month=rows_outside_month(summary_files, "usage_start", month),
        uncast_cells=sum(f["uncast_cells"] for f in footers),
        days_loaded=len({f["day"] for f in pod}),
        **{f"raw_{c}": v for c, v in zip(_RAW_POD, raw, strict=True)},
        **{f"summary_{c}": v for c, v in zip(_SUMMARY_POD, summary, strict=True)},
    )


@dataclass(frozen=True)
class OcpType(ProviderType):
    """OpenShift: credentials are the cluster id (the source's ``source_ref``); no billing source."""

    family = "OCP"
    cost_authtype = "token"
    credential_fetch = CredentialFetch(source_ref=True)
    summary_table = SUMMARY_TABLE
    reads_reports = False

    def shape_credentials(self, inputs: CredentialInputs) -> dict[str, Any]:
        if not inputs.source_ref:
            raise CredentialsError("Unable to find Cluster ID")
        return {"cluster_id": inputs.source_ref}

    def settings_complete(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> bool:
        return bool(credentials)

    def check_settings(self, credentials: dict[str, Any], data_source: dict[str, Any]) -> None:
        if not credentials.get("cluster_id"):
            raise SettingsError("The cluster ID is missing.")

    def convert(self, files: ReportFiles, manifest: Manifest, p: MonthPartition) -> LineItemsResult:
        raise IngestError("OpenShift line items arrive as uploaded payloads, not from report files")

    def daily(self, p: MonthPartition) -> DailyOutcome:
        tables = build_daily(**p.where, work_dir=p.work_dir).tables
        return DailyOutcome(
            tuple(t.partition for t in tables.values()),
            sum(len(t.files) for t in tables.values()),
            sum(t.rows for t in tables.values()),
            sum(t.bytes for t in tables.values()),
            {name: t.rows for name, t in tables.items()},
        )

    def summary(self, p: MonthPartition) -> WrittenTable:
        if not p.cluster_id:
            raise ValueError("the OpenShift provider has no cluster id")
        return build_summary(**p.where, cluster_id=p.cluster_id, work_dir=p.work_dir)

    def checks(self, p: MonthPartition) -> MonthChecks:
        t = month_totals(**p.where)
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

    def line_item_dirs(self, p: MonthPartition) -> list[Path]:
        return [ocp_line_items_dir(p.out_root, p.schema, t.name, p.provider_uuid, p.month) for t in REPORT_TYPES]

    def daily_dirs(self, p: MonthPartition) -> list[Path]:
        return [ocp_daily_dir(p.out_root, p.schema, t.name, p.provider_uuid, p.month) for t in REPORT_TYPES]


OCP = OcpType("OCP", "openshift", (), ())
TYPES = (OCP,)
