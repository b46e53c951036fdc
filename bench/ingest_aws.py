"""Benchmark: one AWS CUR month from manifest to ``reporting_awscostentrylineitem_daily_summary``.

Data: a nise static AWS report for November 2026 (one line per generator and hour, 7 generator kinds,
so ``n`` generators of each kind give ``n * 7 * 720`` rows), generated once and cached under
``bench/.data/``. Three approaches run on the same files, each in a fresh child process (spawned;
timed after imports; peak RSS of that process and anything it waited for):

- ``ours``: :mod:`koku_dagster.providers.aws` steps: streaming CSV -> Parquet per file (2 threads),
  daily line items and the summary by DuckDB from the written Parquet.
- ``duckdb``: baseline (a), DuckDB only: one ``COPY`` statement reading every CSV of the month into
  typed, normalised line-item Parquet, then the same daily and summary SQL.
- ``pandas``: baseline (b), Koku's way: ``pandas.read_csv(chunksize=200_000)`` with per-cell
  converters, each chunk normalised and written to its own Parquet file with its own per-chunk daily
  aggregation, then the same summary SQL over the per-chunk daily files.

Every approach's summary unblended cost is compared to the exact (DECIMAL) sum over the raw CSV text.
Call :func:`run`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.measure import HEADERS, cells, measure, summarise
from bench.measure import duckdb_default as _duckdb_default

NAME = "ingest_aws"
DATA_DIR = Path(__file__).resolve().parent / ".data"
MONTH = date(2026, 11, 1)
MONTH_RANGE = {"start": "2026-11-01 00:00:00+00", "end": "2026-12-01 00:00:00+00"}  # DuckDB parameters
ROWS_PER_GENERATOR = 7 * 30 * 24
SCHEMA = "org1234567"
PROVIDER_UUID = "6e212746-484a-40bd-b8a2-b20e8a2d0a8b"
APPROACHES = ("ours", "duckdb", "pandas")


# ------------------------------------------------------------------------------------------ data


def dataset(rows_target: int) -> Path:
    """A bucket directory holding a nise November-2026 CUR of at least ``rows_target`` rows (cached)."""
    generators = math.ceil(rows_target / ROWS_PER_GENERATOR)
    home = DATA_DIR / f"aws-cur-{generators}"
    bucket = home / "bucket"
    if (home / "complete").exists():
        return bucket
    shutil.rmtree(home, ignore_errors=True)
    bucket.mkdir(parents=True)
    nise = str(Path(sys.executable).with_name("nise"))
    import nise as nise_pkg

    template = Path(nise_pkg.__file__).parent / "yaml_generators/static/aws_generator_config.yml"
    config = home / "generator.yml"
    config.write_text(template.read_text().replace("_gens: 1000", f"_gens: {generators}"))
    with tempfile.TemporaryDirectory(dir=home) as scratch:  # nise writes temporary CSVs into its cwd
        print(f"generating {generators * ROWS_PER_GENERATOR:,} CUR rows with nise (cached in {home}) ...", flush=True)
        static = home / "static.yml"
        subprocess.run(
            [nise, "yaml", "aws", str(config), "-o", str(static), "-s", "2026-11-01", "-e", "2026-12-01"],
            cwd=scratch,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                nise,
                "report",
                "aws",
                "-s",
                "2026-11-01",
                "-e",
                "2026-12-01",
                "--static-report-file",
                str(static),
                "--aws-s3-bucket-name",
                str(bucket),
                "--aws-s3-report-name",
                "cur",
            ],
            cwd=scratch,
            check=True,
            capture_output=True,
        )
    (home / "complete").touch()
    return bucket


def raw_unblended_cost(files: list[Path]) -> Decimal:
    """Exact sum of ``lineItem/UnblendedCost`` over the raw CSV text of the month's rows (DuckDB DECIMAL)."""
    with _duckdb_default() as con:
        value = con.execute(
            """SELECT sum(TRY_CAST(nullif("lineItem/UnblendedCost", '') AS DECIMAL(38, 18)))
               FROM read_csv($files, all_varchar = true, header = true)
               WHERE CAST("lineItem/UsageStartDate" AS TIMESTAMPTZ) >= CAST($start AS TIMESTAMPTZ)
                 AND CAST("lineItem/UsageStartDate" AS TIMESTAMPTZ) < CAST($end AS TIMESTAMPTZ)""",
            {"files": [str(f) for f in files], **MONTH_RANGE},
        ).fetchone()
    return Decimal(value[0]) if value and value[0] is not None else Decimal(0)


# ------------------------------------------------------------------------------------ approaches


def _ours(bucket: Path, out: Path) -> tuple[int, Path]:
    from koku_dagster.providers import aws
    from koku_dagster.providers.aws import LocalCurReports

    source = LocalCurReports(bucket)
    manifest = source.find_manifest(MONTH)
    assert manifest is not None
    where = {"schema": SCHEMA, "provider_uuid": PROVIDER_UUID, "month": MONTH, "out_root": out}
    items = aws.AWS.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=PROVIDER_UUID, out_root=out)
    aws.AWS.build_daily(work_dir=out / "work", **where)
    summary = aws.AWS.build_summary(work_dir=out / "work", **where)
    return items.stats.rows, summary.partition


def _month_files(bucket: Path) -> list[Path]:
    from koku_dagster.providers.aws import LocalCurReports

    manifest = LocalCurReports(bucket).find_manifest(MONTH)
    assert manifest is not None
    return [f.local_path for f in manifest.files if f.local_path is not None]


def _duckdb_select(header: list[str]) -> str:
    """The typed, normalised line-item SELECT over ``read_csv`` (same columns as ours)."""
    from koku_dagster.providers.aws_cur import (
        AMOUNT_COLUMNS,
        COST_CATEGORY,
        RESOURCE_TAGS,
        STRING_COLUMNS,
        TIMESTAMP_COLUMNS,
        Role,
        map_header,
    )

    mappings = [map_header(h) for h in header]
    column = {m.name: m.header.replace('"', '""') for m in reversed(mappings) if m.role is Role.COLUMN}

    def json_of(role: Role) -> str:
        items = [
            f"{{'k': '{m.name}', 'v': \"{m.header}\"}}"
            for m in sorted(mappings, key=lambda m: m.name)
            if m.role is role
        ]
        if not items:
            return "'{}'"
        return f"to_json(map_from_entries(list_filter([{', '.join(items)}], lambda x: x.v <> '')))"

    select = [f"""coalesce("{column[c]}", '') AS {c}""" if c in column else f"'' AS {c}" for c in STRING_COLUMNS]
    select += [
        f"""TRY_CAST(nullif("{column[c]}", '') AS TIMESTAMPTZ) AS {c}""" if c in column else f"NULL::TIMESTAMPTZ AS {c}"
        for c in TIMESTAMP_COLUMNS
    ]
    select += [
        f"""TRY_CAST(nullif("{column[c]}", '') AS DOUBLE) AS {c}""" if c in column else f"0.0 AS {c}"
        for c in AMOUNT_COLUMNS
    ]
    select += [
        f"CAST({json_of(Role.USER_TAG)} AS VARCHAR) AS {RESOURCE_TAGS}",
        f"CAST({json_of(Role.COST_CATEGORY)} AS VARCHAR) AS {COST_CATEGORY}",
    ]
    return ",\n".join(select)


def _duckdb(bucket: Path, out: Path) -> tuple[int, Path]:
    from koku_dagster.providers.aws import AWS, SUMMARY_TABLE
    from koku_dagster.providers.base import load_sql
    from koku_dagster.reports import duck
    from koku_dagster.reports.csv_parquet import read_header

    files = _month_files(bucket)
    header = read_header(lambda: files[0].open("rb"), files[0].name)
    out.mkdir(parents=True)
    with _duckdb_default() as con:
        items = duck.copy_to_parquet(
            con,
            f"""SELECT * FROM (SELECT {_duckdb_select(header)}
                FROM read_csv($files, all_varchar = true, header = true))
                WHERE lineitem_usagestartdate >= $start AND lineitem_usagestartdate < $end""",
            {"files": [str(f) for f in files], **MONTH_RANGE},
            out / "line_items.parquet",
        )
        duck.copy_to_parquet(
            con, load_sql(AWS.DAILY_SQL), {"line_item_files": [str(items.path)], **MONTH_RANGE}, out / "daily.parquet"
        )
        summary = out / "summary"
        summary.mkdir()
        duck.copy_to_parquet(
            con,
            load_sql(SUMMARY_TABLE),
            {"daily_files": [str(out / "daily.parquet")], "source_uuid": PROVIDER_UUID, **MONTH_RANGE},
            summary / "part-0.parquet",
        )
    return items.rows, summary


def _pandas(bucket: Path, out: Path) -> tuple[int, Path]:
    import pandas as pd

    from koku_dagster.providers.aws import SUMMARY_TABLE
    from koku_dagster.providers.aws_cur import (
        AMOUNT_COLUMNS,
        COST_CATEGORY,
        RESOURCE_TAGS,
        STRING_COLUMNS,
        TIMESTAMP_COLUMNS,
        Role,
        map_header,
    )
    from koku_dagster.providers.base import load_sql
    from koku_dagster.reports import duck
    from koku_dagster.reports.csv_parquet import read_header

    def safe_float(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return math.nan

    def timestamp(text: str) -> pd.Timestamp:
        return pd.Timestamp(text) if text else pd.NaT

    group = [
        "lineitem_resourceid",
        "bill_payeraccountid",
        "bill_billingentity",
        "lineitem_usageaccountid",
        "lineitem_legalentity",
        "lineitem_lineitemdescription",
        "lineitem_productcode",
        "lineitem_availabilityzone",
        "lineitem_lineitemtype",
        "lineitem_usagetype",
        "lineitem_operation",
        "product_productfamily",
        "product_operatingsystem",
        "product_instancetype",
        "product_region",
        "pricing_unit",
        "resourcetags",
        "costcategory",
    ]
    sums = [
        "lineitem_usageamount",
        "lineitem_normalizedusageamount",
        "lineitem_unblendedcost",
        "lineitem_blendedcost",
        "pricing_publicondemandcost",
        "savingsplan_savingsplaneffectivecost",
    ]
    maxes = [
        "lineitem_normalizationfactor",
        "lineitem_unblendedrate",
        "lineitem_blendedrate",
        "pricing_publicondemandrate",
        "savingsplan_savingsplanrate",
        "lineitem_currencycode",
        "bill_invoiceid",
        "product_productname",
        "product_vcpu",
        "product_memory",
    ]
    start, end = (pd.Timestamp(MONTH_RANGE[k]) for k in ("start", "end"))
    (out / "items").mkdir(parents=True)
    (out / "daily").mkdir()
    rows = 0
    for path in _month_files(bucket):
        mappings = [map_header(h) for h in read_header(lambda p=path: p.open("rb"), path.name)]
        column = {m.header: m.name for m in mappings if m.role is Role.COLUMN}
        tags = {m.header: m.name for m in mappings if m.role is Role.USER_TAG}
        categories = {m.header: m.name for m in mappings if m.role is Role.COST_CATEGORY}
        converters: dict[str, Callable[[str], Any]] = dict.fromkeys([*column, *tags, *categories], str)
        converters.update({h: safe_float for h, n in column.items() if n in AMOUNT_COLUMNS})
        converters.update({h: timestamp for h, n in column.items() if n in TIMESTAMP_COLUMNS})
        chunks = pd.read_csv(
            path, usecols=list(converters), converters=converters, keep_default_na=False, chunksize=200_000
        )
        for i, chunk in enumerate(chunks):
            for name, mapping in ((RESOURCE_TAGS, tags), (COST_CATEGORY, categories)):
                keys = sorted(mapping, key=mapping.get)
                chunk[name] = [
                    json.dumps({mapping[k]: v for k, v in zip(keys, row, strict=True) if v}, separators=(",", ":"))
                    for row in chunk[keys].itertuples(index=False)
                ]
            frame = chunk.rename(columns=column)
            for name in STRING_COLUMNS:
                if name not in frame:
                    frame[name] = ""
            for name in TIMESTAMP_COLUMNS:
                frame[name] = pd.to_datetime(frame[name], utc=True) if name in frame else pd.NaT
            for name in AMOUNT_COLUMNS:
                if name not in frame:
                    frame[name] = 0.0
            frame = frame[[*STRING_COLUMNS, *TIMESTAMP_COLUMNS, *AMOUNT_COLUMNS, RESOURCE_TAGS, COST_CATEGORY]]
            frame = frame[(frame["lineitem_usagestartdate"] >= start) & (frame["lineitem_usagestartdate"] < end)]
            rows += len(frame)
            frame.to_parquet(out / "items" / f"{path.stem}_{i}.parquet", index=False)
            daily = frame.assign(lineitem_usagestartdate=frame["lineitem_usagestartdate"].dt.floor("D"))
            daily = (
                daily.groupby(["lineitem_usagestartdate", *group], dropna=False)
                .agg({**dict.fromkeys(sums, "sum"), **dict.fromkeys(maxes, "max")})
                .reset_index()
            )
            daily["line_item_count"] = 1
            daily.to_parquet(out / "daily" / f"{path.stem}_daily_{i}.parquet", index=False)
    summary = out / "summary"
    summary.mkdir()
    with _duckdb_default() as con:
        daily_files = sorted(str(p) for p in (out / "daily").glob("*.parquet"))
        duck.copy_to_parquet(
            con,
            load_sql(SUMMARY_TABLE),
            {"daily_files": daily_files, "source_uuid": PROVIDER_UUID, **MONTH_RANGE},
            summary / "part-0.parquet",
        )
    return rows, summary


_RUNNERS: dict[str, Callable[[Path, Path], tuple[int, Path]]] = {"ours": _ours, "duckdb": _duckdb, "pandas": _pandas}


def _check(result: tuple[int, Path]) -> dict[str, Any]:
    """Rows, summary rows and summary unblended cost of one run (in its process, after timing)."""
    rows, summary = result
    with _duckdb_default() as con:
        cost, summary_rows = con.execute(
            "SELECT sum(CAST(unblended_cost AS DECIMAL(38, 12))), count(*) FROM read_parquet($f)",
            {"f": [str(p) for p in Path(summary).glob("*.parquet")]},
        ).fetchone()
    return {"rows": rows, "summary_rows": summary_rows, "summary_unblended_cost": str(cost)}


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def focus_vs_summary(bucket: Path, repeats: int) -> tuple[float, float]:
    """Median seconds of the FOCUS build and of the summary step on the same converted month (issue goal:
    FOCUS no slower than the summary step)."""
    from koku_dagster.focus import build_focus, focus_dir
    from koku_dagster.providers import aws
    from koku_dagster.reports.paths import line_items_dir

    with tempfile.TemporaryDirectory(prefix="bench-focus-") as tmp:
        out = Path(tmp) / "out"
        _ours(bucket, out)
        where = {"schema": SCHEMA, "provider_uuid": PROVIDER_UUID, "month": MONTH, "out_root": out}
        items = line_items_dir(out, SCHEMA, "AWS", PROVIDER_UUID, MONTH)
        target = focus_dir(out, PROVIDER_UUID, MONTH)
        summary, focus = [], []
        for _ in range(repeats):
            summary.append(_timed(lambda: aws.AWS.build_summary(work_dir=out / "work", **where)))
            focus.append(
                _timed(
                    lambda: build_focus(
                        items,
                        provider_type="AWS",
                        provider_uuid=PROVIDER_UUID,
                        month=MONTH,
                        out_dir=target,
                        work_dir=out / "work",
                    )
                )
            )
    return statistics.median(focus), statistics.median(summary)


def _measure(approach: str, bucket: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{approach}-") as out:
        return measure(_RUNNERS[approach], (bucket, Path(out) / "out"), _check, approach)


def run(rows_target: int = 500_000, repeats: int = 3) -> list[dict[str, Any]]:
    """Generate (or reuse) the data, run every approach ``repeats`` times interleaved, print and return
    one row per approach (median wall time, max peak RSS, ratios to the baselines)."""
    from bench._util import machine, table

    bucket = dataset(rows_target)
    raw = raw_unblended_cost(_month_files(bucket))
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in APPROACHES}
    for _ in range(repeats):
        for approach in APPROACHES:
            runs[approach].append(_measure(approach, bucket))
    rows = summarise(NAME, runs)
    for row in rows:
        row["cost_ok"] = all(
            abs(Decimal(r["summary_unblended_cost"]) - raw) < Decimal("0.005") for r in runs[row["approach"]]
        )
    facts = machine()
    print(
        f"\nAWS CUR month -> summary, {rows[0]['rows']:,} rows, median of {repeats}; raw unblended cost {raw:.2f}; "
        f"{facts['nproc']} CPUs, {facts['memory']} RAM, load avg {os.getloadavg()[0]:.1f}"
    )
    print(table([*HEADERS, "cost = raw"], [[*cells(r), "yes" if r["cost_ok"] else "NO"] for r in rows]))
    focus, summary = focus_vs_summary(bucket, repeats)
    print(
        f"FOCUS 1.2 rows of the month: {focus:.2f} s; summary step on the same month: {summary:.2f} s; "
        f"ratio {focus / summary:.2f} (goal: at most 1.00)"
    )
    return rows


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
