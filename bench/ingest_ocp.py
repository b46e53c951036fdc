"""Benchmark: one OpenShift (operator) month from the uploaded tarball to ``reporting_ocpusagelineitem_daily_summary``.

Data: a nise static OpenShift report for November 2026 (720 hours) of a cluster of ``NODES`` nodes with
``NAMESPACES`` namespaces each, ``VOLUMES`` one-claim volumes and ``pods`` pods per namespace (chosen from
the row target), so one hour holds a pod-usage row per pod, a storage row per claim, a node-labels row
per node and a namespace-labels row per namespace. nise writes it as an ``--insights-upload`` folder
(``manifest.json`` + CSVs of at most 100,000 rows, one report type each), packed once into the operator's
``.tar.gz`` payload with :func:`~koku_devtools.payloads.build_payload`; both are cached under
``bench/.data/``.

Three approaches start from the same tarball, each in a fresh child process (spawned; timed after
imports; peak RSS of that process and anything it waited for, see :mod:`bench.measure`):

- ``ours``: ``fetch_payload`` (a ``file://`` URL) -> ``read_manifest`` -> ``extract_payload`` ->
  :func:`~koku_dagster.providers.ocp.convert_payload` -> ``build_daily`` -> ``build_summary``.
- ``duckdb``: baseline (a): the payload copied and unpacked with ``tarfile`` (``filter="data"``), then
  per report type one DuckDB ``COPY`` reading its CSV into typed line-item Parquet (labels as JSON),
  the same daily SQL per type and the same summary SQL.
- ``pandas``: baseline (b), Koku's way: ``pandas.read_csv(chunksize=200_000)`` with per-cell converters,
  each chunk written to its own Parquet file with its own per-chunk daily aggregation; the partial daily
  groups are merged per type (DuckDB) and the same summary SQL runs over them.

Checks (after timing): every approach's summary pod core-hours and GiB-hours must equal the exact
(DECIMAL) sums of the raw CSV text / 3600 (/ 2^30) within 1e-6, and its summary row count and storage
GiB-months must equal ours; ours must also pass :attr:`~koku_dagster.providers.ocp.MonthTotals.usage_matches`.
Call :func:`run`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.measure import HEADERS, cells, duckdb_default, measure, summarise

NAME = "ingest_ocp"
DATA_DIR = Path(__file__).resolve().parent / ".data"
MONTH = date(2026, 11, 1)
MONTH_RANGE = {"start": "2026-11-01 00:00:00+00", "end": "2026-12-01 00:00:00+00"}  # DuckDB parameters
HOURS = 30 * 24
NODES, NAMESPACES, VOLUMES = 10, 4, 5  # per cluster, per node, per namespace (one claim each)
CLUSTER_ID = "bench-ocp-cluster"
SCHEMA = "org1234567"
PROVIDER_UUID = "0b6c1f7e-5d2a-4c3b-9e8f-7a6b5c4d3e2f"
APPROACHES = ("ours", "duckdb", "pandas")
SUMMARY_TYPES = ("pod_usage", "storage_usage", "node_labels", "namespace_labels")
RAW_POD = (
    "pod_usage_cpu_core_seconds",
    "pod_request_cpu_core_seconds",
    "pod_usage_memory_byte_seconds",
    "pod_request_memory_byte_seconds",
)
SUMMARY_POD = (
    "pod_usage_cpu_core_hours",
    "pod_request_cpu_core_hours",
    "pod_usage_memory_gigabyte_hours",
    "pod_request_memory_gigabyte_hours",
)
TO_HOURS = (Decimal(3600), Decimal(3600), Decimal(3600 * 2**30), Decimal(3600 * 2**30))
SUMMARY_STORAGE = ("persistentvolumeclaim_capacity_gigabyte_months", "persistentvolumeclaim_usage_gigabyte_months")
TOLERANCE = Decimal("0.000001")
CHUNK_ROWS = 200_000


# ------------------------------------------------------------------------------------------ data


def _pods_per_namespace(rows_target: int) -> int:
    fixed = NODES + NODES * NAMESPACES + NODES * NAMESPACES * VOLUMES  # node, namespace label and storage rows
    return max(1, math.ceil((math.ceil(rows_target / HOURS) - fixed) / (NODES * NAMESPACES)))


def _generator_config(pods: int) -> str:
    return f"""storage_classes:
- gp2
max_name_words: 2
max_resource_id_length: 10
max_nodes: {NODES}
max_node_cpu_cores: 16
max_node_memory_gig: 64
max_node_namespaces: {NAMESPACES}
max_node_namespace_pods: {pods}
min_node_namespace_pod_seconds: 300
max_node_namespace_pod_seconds: 3600
max_node_namespace_pod_labels: 5
max_node_namespace_volumes: {VOLUMES}
max_node_namespace_volume_labels: 3
max_node_namespace_volume_request_gig: 64
max_node_namespace_volume_volume_claims: 1
max_node_namespace_volume_volume_claim_capacity_gig: 64
max_node_namespace_volume_volume_claim_labels: 2
"""


def dataset(rows_target: int) -> tuple[Path, dict[str, Any]]:
    """The payload tarball of a nise November-2026 OpenShift month of at least ``rows_target`` rows
    (cached), and facts about it (rows, sizes, generation seconds)."""
    from koku_devtools.payloads import build_payload

    pods = _pods_per_namespace(rows_target)
    home = DATA_DIR / f"ocp-month-{NODES}x{NAMESPACES}x{pods}"
    payload = home / "payload.tar.gz"
    done = home / "complete.json"
    if done.exists():
        return payload, json.loads(done.read_text())
    shutil.rmtree(home, ignore_errors=True)
    upload = home / "upload"
    upload.mkdir(parents=True)
    nise = str(Path(sys.executable).with_name("nise"))
    config = home / "generator.yml"
    config.write_text(_generator_config(pods))
    expected = (NODES * NAMESPACES * (pods + VOLUMES + 1) + NODES) * HOURS
    print(
        f"generating a {expected:,}-row OpenShift month with nise ({NODES} nodes x {NAMESPACES} namespaces x "
        f"{pods} pods; cached in {home}) ...",
        flush=True,
    )
    started = time.monotonic()
    # nise writes temporary CSVs into its cwd, and its payload files into $TMPDIR/payload, where another
    # nise run (the tests) would remove them
    with tempfile.TemporaryDirectory(dir=home) as scratch:
        env = {**os.environ, "TMPDIR": scratch}
        static = home / "static.yml"
        subprocess.run(
            [nise, "yaml", "ocp", "-c", str(config), "-o", str(static), "-s", "2026-11-01", "-e", "2026-12-01"],
            cwd=scratch,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                nise,
                "report",
                "ocp",
                "-s",
                "2026-11-01",
                "-e",
                "2026-12-01",
                "--static-report-file",
                str(static),
                "--ocp-cluster-id",
                CLUSTER_ID,
                "--insights-upload",
                str(upload),
            ],
            cwd=scratch,
            env=env,
            check=True,
            capture_output=True,
        )
    generate_s = time.monotonic() - started
    report_dir = upload / CLUSTER_ID / "20261101-20261201"  # nise also writes an empty December payload
    started = time.monotonic()
    build_payload(report_dir, payload)
    pack_s = time.monotonic() - started
    csvs = list(report_dir.glob("*.csv"))
    rows = 0
    for path in csvs:
        with path.open("rb") as fh:
            rows += max(0, sum(1 for _ in fh) - 1)
    facts = {
        "rows": rows,
        "pods_per_namespace": pods,
        "csv_files": len(csvs),
        "csv_bytes": sum(p.stat().st_size for p in csvs),
        "tar_bytes": payload.stat().st_size,
        "generate_s": round(generate_s, 1),
        "pack_s": round(pack_s, 1),
    }
    shutil.rmtree(upload)  # the payload holds it all
    done.write_text(json.dumps(facts, indent=1))
    return payload, facts


class _Laps:
    """Seconds per step: ``laps("step")`` ends the step that started at the previous call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._last
        self._last = now


def _unpack(tarball: Path, out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Baselines: download (copy) the payload and unpack it as Koku does (``extractall``, data filter)."""
    local = out / "download" / tarball.name
    local.parent.mkdir(parents=True)
    shutil.copyfile(tarball, local)
    with tarfile.open(local) as tar:
        tar.extractall(out / "extract", filter="data")
    manifest = json.loads((out / "extract" / "manifest.json").read_text())
    return manifest, [out / "extract" / name for name in manifest["files"]]


def _typed_files(files: list[Path]) -> dict[str, list[Path]]:
    """Report type name -> its CSV files (types detected from the header, as ours does)."""
    from koku_dagster.providers.ocp import detect_report_type
    from koku_dagster.reports.csv_parquet import read_header

    typed: dict[str, list[Path]] = {}
    for path in files:
        header = read_header(lambda p=path: p.open("rb"), path.name)
        if header:
            typed.setdefault(detect_report_type(header, path.name).name, []).append(path)
    return typed


def raw_pod_sums(tarball: Path) -> list[Decimal]:
    """Exact sums of the pod usage and request seconds over the raw CSV text (DuckDB DECIMAL)."""
    with tempfile.TemporaryDirectory(prefix="bench-ocp-raw-") as tmp:
        _manifest, files = _unpack(tarball, Path(tmp))
        pods = _typed_files(files)["pod_usage"]
        exprs = ", ".join(f"sum(TRY_CAST(nullif({c}, '') AS DECIMAL(38, 12)))" for c in RAW_POD)
        with duckdb_default() as con:
            row = con.execute(
                f"""SELECT {exprs} FROM read_csv($files, all_varchar = true, header = true)
                    WHERE try_strptime(interval_start, '%Y-%m-%d %H:%M:%S %z UTC') >= CAST($start AS TIMESTAMPTZ)
                      AND try_strptime(interval_start, '%Y-%m-%d %H:%M:%S %z UTC') < CAST($end AS TIMESTAMPTZ)""",
                {"files": [str(p) for p in pods], **MONTH_RANGE},
            ).fetchone()
    return [Decimal(v or 0) for v in row]


# ------------------------------------------------------------------------------------ approaches


def _ours(tarball: Path, out: Path) -> dict[str, Any]:
    from koku_dagster.providers import ocp
    from koku_dagster.providers.ocp_payload import extract_payload, read_manifest
    from koku_dagster.uploads.download import UrlPolicy, fetch_payload

    laps = _Laps()
    local = fetch_payload(
        tarball.as_uri(),
        out / "download" / tarball.name,
        policy=UrlPolicy(file_roots=(tarball.parent,)),
        max_bytes=4 << 30,
        timeout=60,
    )
    laps("fetch")
    manifest = read_manifest(local)
    laps("read manifest")
    files = extract_payload(local, out / "extract", manifest)
    laps("extract")
    data = out / "data"
    result = ocp.convert_payload(files, manifest, schema=SCHEMA, provider_uuid=PROVIDER_UUID, out_root=data)
    laps("convert")
    summary = None
    for month in result.months_changed:
        where = {"schema": SCHEMA, "provider_uuid": PROVIDER_UUID, "month": month, "out_root": data}
        ocp.build_daily(work_dir=out / "work", **where)
        laps("daily")
        built = ocp.build_summary(cluster_id=manifest.cluster_id, work_dir=out / "work", **where)
        laps("summary")
        if month == MONTH:
            summary = built.partition
    assert summary is not None, "the payload did not hold the bench month"
    rows = sum(d.rows for d in result.days if d.outcome != "skipped" and d.day.replace(day=1) == MONTH)
    return {"rows": rows, "summary": summary, "out_root": data, "steps": laps.seconds}


def _empty_items(report_type: Any, work: Path) -> str:
    import pyarrow.parquet as pq

    path = work / f"empty-{report_type.name}.parquet"
    pq.write_table(report_type.schema.empty_table(), path)
    return str(path)


def _summarise(con: Any, daily: dict[str, str], pod_items: list[str], cluster_id: str, out: Path) -> Path:
    """The summary SQL (the one ours runs) over one daily file per type; returns the summary folder."""
    from koku_dagster.providers import ocp
    from koku_dagster.providers.base import load_sql
    from koku_dagster.reports import duck

    summary = out / "summary"
    summary.mkdir()
    params = {
        "pod_daily": [daily["pod_usage"]],
        "storage_daily": [daily["storage_usage"]],
        "node_labels_daily": [daily["node_labels"]],
        "namespace_labels_daily": [daily["namespace_labels"]],
        "pod_items": pod_items,
        "cluster_id": cluster_id,
        "source_uuid": PROVIDER_UUID,
        "days_in_month": 30,
    }
    duck.copy_to_parquet(con, load_sql(ocp.SUMMARY_TABLE), params, summary / "part-0.parquet")
    return summary


_TIMESTAMP = """try_strptime(nullif(src."{c}", ''), '%Y-%m-%d %H:%M:%S %z UTC')"""
#: ``label_a:x|label_b:y`` -> list of {k, v} (``label_`` prefix dropped, items without ``:`` left out)
_LABEL_ITEMS = """CREATE TEMP MACRO ocp_items(t) AS list_transform(
    list_filter(string_split(coalesce(t, ''), '|'), lambda i: strpos(i, ':') > 0),
    lambda i: {'k': CASE WHEN starts_with(i, 'label_') THEN i[7:strpos(i, ':') - 1] ELSE i[:strpos(i, ':') - 1] END,
               'v': i[strpos(i, ':') + 1:]})"""


def _duckdb_query(report_type: Any, header: list[str]) -> str:
    """The typed line-item query over ``read_csv`` for one report type (ours' Parquet schema). Label
    strings are converted to JSON once per distinct value (later items win on a repeated key, as in a
    Python dict) and joined back, which is 5x faster than converting them row by row."""
    from koku_dagster.providers.ocp import TIMESTAMPS

    present = set(header)
    labels = [c for c in report_type.labels if c in present]
    ctes = ["src AS NOT MATERIALIZED (SELECT * FROM read_csv($files, all_varchar = true, header = true))"]
    joins = []
    for n, c in enumerate(labels):
        ctes.append(
            f"""lab{n} AS (SELECT l, CAST(to_json(map_from_entries(list_filter(it, lambda e, i:
                    NOT list_contains(list_transform(it[i + 1:], lambda x: x.k), e.k)))) AS VARCHAR) AS j
                FROM (SELECT l, ocp_items(l) AS it FROM (SELECT DISTINCT "{c}" AS l FROM src)))"""
        )
        joins.append(f'LEFT JOIN lab{n} ON lab{n}.l = src."{c}"')
    select = [f"{_TIMESTAMP.format(c=c)} AS {c}" if c in present else f"NULL::TIMESTAMPTZ AS {c}" for c in TIMESTAMPS]
    select += [f"""coalesce(src."{c}", '') AS {c}""" if c in present else f"'' AS {c}" for c in report_type.strings]
    select += [
        f"""TRY_CAST(nullif(src."{c}", '') AS DOUBLE) AS {c}""" if c in present else f"NULL::DOUBLE AS {c}"
        for c in report_type.numbers
    ]
    select += [
        f"coalesce(lab{labels.index(c)}.j, '{{}}') AS {c}" if c in labels else f"'{{}}' AS {c}"
        for c in report_type.labels
    ]
    return f"""WITH {", ".join(ctes)}
        SELECT * FROM (SELECT {", ".join(select)} FROM src {" ".join(joins)})
        WHERE interval_start >= CAST($start AS TIMESTAMPTZ) AND interval_start < CAST($end AS TIMESTAMPTZ)"""


def _duckdb(tarball: Path, out: Path) -> dict[str, Any]:
    from koku_dagster.providers.ocp import REPORT_TYPES
    from koku_dagster.reports import duck
    from koku_dagster.reports.csv_parquet import read_header

    laps = _Laps()
    manifest, files = _unpack(tarball, out)
    laps("fetch + extract")
    typed = _typed_files(files)
    work = out / "work"
    work.mkdir()
    rows = 0
    items: dict[str, list[str]] = {}
    daily: dict[str, str] = {}
    with duckdb_default() as con:
        con.execute(_LABEL_ITEMS)
        for report_type in REPORT_TYPES:
            paths = typed.get(report_type.name, [])
            if paths:
                header = [h.strip().lower() for h in read_header(lambda p=paths[0]: p.open("rb"), paths[0].name)]
                written = duck.copy_to_parquet(
                    con,
                    _duckdb_query(report_type, header),
                    {"files": [str(p) for p in paths], **MONTH_RANGE},
                    work / f"{report_type.name}.parquet",
                )
                rows += written.rows
                items[report_type.name] = [str(written.path)]
            elif report_type.name in SUMMARY_TYPES:
                items[report_type.name] = [_empty_items(report_type, work)]
            else:
                continue
            daily[report_type.name] = str(work / f"{report_type.name}_daily.parquet")
            duck.copy_to_parquet(
                con,
                report_type.daily_query(),
                {"line_item_files": items[report_type.name]},
                Path(daily[report_type.name]),
            )
        laps("line items + daily")
        summary = _summarise(con, daily, items["pod_usage"], manifest["cluster_id"], out)
        laps("summary")
    return {"rows": rows, "summary": summary, "steps": laps.seconds}


def _safe_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _openshift_datetime(text: str) -> Any:
    import pandas as pd

    return pd.Timestamp(text.removesuffix(" UTC")) if text else pd.NaT


def _openshift_labels(text: str) -> str:
    labels: dict[str, str] = {}
    for item in text.split("|") if text else ():
        key, sep, value = item.partition(":")
        if sep:
            labels[key.removeprefix("label_")] = value
    return json.dumps(labels, ensure_ascii=False, separators=(",", ":"))


def _pandas(tarball: Path, out: Path) -> dict[str, Any]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from koku_dagster.providers.ocp import REPORT_TYPES, TIMESTAMPS
    from koku_dagster.reports import duck
    from koku_dagster.reports.csv_parquet import read_header

    laps = _Laps()
    manifest, files = _unpack(tarball, out)
    laps("fetch + extract")
    typed = _typed_files(files)
    start, end = (pd.Timestamp(MONTH_RANGE[k]) for k in ("start", "end"))
    work = out / "work"
    rows = 0
    items: dict[str, list[str]] = {}
    partial: dict[str, list[str]] = {}
    for report_type in REPORT_TYPES:
        (work / report_type.name).mkdir(parents=True)
        items[report_type.name], partial[report_type.name] = [], []
        schema = report_type.schema
        keys = ["usage_start", *report_type.daily_keys]
        aggs = {c: (c, "max") for c in report_type.strings + report_type.labels if c not in report_type.daily_keys}
        aggs |= {c: (c, "sum" if c in report_type.summed else "max") for c in report_type.numbers}
        for path in typed.get(report_type.name, []):
            header = [h.strip().lower() for h in read_header(lambda p=path: p.open("rb"), path.name)]
            converters: dict[str, Callable[[str], Any]] = {}
            for c in schema.names:
                if c in header:
                    converters[c] = (
                        _openshift_datetime
                        if c in TIMESTAMPS
                        else _safe_float
                        if c in report_type.numbers
                        else _openshift_labels
                        if c in report_type.labels
                        else str
                    )
            chunks = pd.read_csv(
                path, usecols=list(converters), converters=converters, keep_default_na=False, chunksize=CHUNK_ROWS
            )
            for i, frame in enumerate(chunks):
                for c in schema.names:
                    if c in TIMESTAMPS:
                        frame[c] = pd.to_datetime(frame[c], utc=True) if c in frame else pd.NaT
                    elif c not in frame:
                        frame[c] = math.nan if c in report_type.numbers else "{}" if c in report_type.labels else ""
                frame = frame[(frame["interval_start"] >= start) & (frame["interval_start"] < end)]
                if frame.empty:
                    continue
                rows += len(frame)
                name = f"{path.stem}_{i}"
                table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
                pq.write_table(table, work / report_type.name / f"{name}.parquet")
                items[report_type.name].append(str(work / report_type.name / f"{name}.parquet"))
                day = frame.assign(usage_start=frame["interval_start"].dt.floor("D"))
                day = day.groupby(keys, dropna=False).agg(**aggs, line_item_count=("interval_start", "size"))
                day.reset_index().to_parquet(work / report_type.name / f"{name}_daily.parquet", index=False)
                partial[report_type.name].append(str(work / report_type.name / f"{name}_daily.parquet"))
    laps("chunks: line items + partial daily")
    daily: dict[str, str] = {}
    with duckdb_default() as con:
        for report_type in REPORT_TYPES:
            name = report_type.name
            if not partial[name] and name not in SUMMARY_TYPES:
                continue
            if not partial[name]:  # a summary input without rows: its daily table from an empty line-item file
                items[name] = [_empty_items(report_type, work)]
                query, params = report_type.daily_query(), {"line_item_files": items[name]}
            else:  # merge the per-chunk partial groups (sums of sums, maxima of maxima)
                merged = ["CAST(usage_start AS DATE) AS usage_start", *report_type.daily_keys]
                merged += [
                    f"max({c}) AS {c}"
                    for c in report_type.strings + report_type.labels
                    if c not in report_type.daily_keys
                ]
                merged += [f"{'sum' if c in report_type.summed else 'max'}({c}) AS {c}" for c in report_type.numbers]
                query = (
                    f"SELECT {', '.join(merged)}, sum(line_item_count) AS line_item_count "
                    "FROM read_parquet($files) GROUP BY ALL"
                )
                params = {"files": partial[name]}
            daily[name] = str(work / f"{name}_daily.parquet")
            duck.copy_to_parquet(con, query, params, Path(daily[name]))
        laps("merge daily")
        summary = _summarise(con, daily, items["pod_usage"], manifest["cluster_id"], out)
        laps("summary")
    return {"rows": rows, "summary": summary, "steps": laps.seconds}


_RUNNERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {"ours": _ours, "duckdb": _duckdb, "pandas": _pandas}


def _check(result: dict[str, Any]) -> dict[str, Any]:
    """Summary figures of one run (in its process, after timing); for ours also ``month_totals``."""
    exprs = ", ".join(f"coalesce(sum(CAST({c} AS DECIMAL(38, 12))), 0)" for c in SUMMARY_POD + SUMMARY_STORAGE)
    with duckdb_default() as con:
        row = con.execute(
            f"SELECT count(*), {exprs} FROM read_parquet($f)",
            {"f": [str(p) for p in Path(result["summary"]).glob("*.parquet")]},
        ).fetchone()
    figures = {
        "rows": result["rows"],
        "summary_rows": row[0],
        "steps": result["steps"],
        "summary_sums": [str(v) for v in row[1 : 1 + len(SUMMARY_POD)]],
        "storage_sums": [str(v) for v in row[1 + len(SUMMARY_POD) :]],
    }
    if "out_root" in result:
        from koku_dagster.providers import ocp

        totals = ocp.month_totals(schema=SCHEMA, provider_uuid=PROVIDER_UUID, month=MONTH, out_root=result["out_root"])
        figures |= {
            "usage_matches": totals.usage_matches,
            "line_item_rows": totals.line_item_rows,
            "uncast_cells": totals.uncast_cells,
        }
    return figures


def _measure(approach: str, tarball: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-ocp-{approach}-") as out:
        return measure(_RUNNERS[approach], (tarball, Path(out) / "out"), _check, approach)


def _verdict(result: dict[str, Any], raw: list[Decimal], reference: dict[str, Any]) -> list[str]:
    """What is wrong with one run's figures (empty when it is right)."""
    problems = []
    for name, got, want, k in zip(SUMMARY_POD, result["summary_sums"], raw, TO_HOURS, strict=True):
        if abs(Decimal(got) - want / k) >= TOLERANCE:
            problems.append(f"{name} {got} != raw {want / k:.6f}")
    if result["summary_rows"] != reference["summary_rows"]:
        problems.append(f"{result['summary_rows']} summary rows, ours {reference['summary_rows']}")
    for name, got, want in zip(SUMMARY_STORAGE, result["storage_sums"], reference["storage_sums"], strict=True):
        if abs(Decimal(got) - Decimal(want)) > max(abs(Decimal(want)), Decimal(1)) * Decimal("1e-9"):
            problems.append(f"{name} {got} != ours {want}")
    if result.get("usage_matches") is False:
        problems.append("month_totals: usage does not match")
    if result.get("uncast_cells"):
        problems.append(f"{result['uncast_cells']} uncast cells")
    return problems


def run(rows_target: int = 1_000_000, repeats: int = 3) -> list[dict[str, Any]]:
    """Generate (or reuse) the data, run every approach ``repeats`` times interleaved, print and return
    one row per approach (median wall time, max peak RSS, ratios to the baselines)."""
    from bench._util import machine, table

    tarball, facts = dataset(rows_target)
    raw = raw_pod_sums(tarball)
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in APPROACHES}
    loads = []
    for _ in range(repeats):
        for approach in APPROACHES:
            runs[approach].append(_measure(approach, tarball))
            loads.append(os.getloadavg()[0])
    rows = summarise(NAME, runs)
    problems: list[str] = []
    for row in rows:
        found = [f"{row['approach']}: {p}" for r in runs[row["approach"]] for p in _verdict(r, raw, runs["ours"][0])]
        row["usage_ok"] = not found
        problems += found
    machine_facts = machine()
    print(
        f"\nOpenShift month, tarball -> summary, {rows[0]['rows']:,} line items "
        f"({facts['tar_bytes'] / 2**20:.0f} MB tar.gz, {facts['csv_bytes'] / 2**20:.0f} MB CSV; nise took "
        f"{facts['generate_s']:.0f} s), median of {repeats}; {machine_facts['nproc']} CPUs, "
        f"{machine_facts['memory']} RAM, load avg during the runs {min(loads):.1f}-{max(loads):.1f}"
    )
    print(table([*HEADERS, "usage = raw, = ours"], [[*cells(r), "yes" if r["usage_ok"] else "NO"] for r in rows]))
    for approach in APPROACHES:
        median = sorted(runs[approach], key=lambda r: r["wall_s"])[len(runs[approach]) // 2]
        print(f"{approach} steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in median["steps"].items()))
    for problem in dict.fromkeys(problems):
        print(f"!!! {problem}")
    return rows


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
