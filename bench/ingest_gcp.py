"""Benchmark: one GCP invoice month read from the BigQuery emulator against the same rows read from a
local export.

Data: a nise GCP export of November 2026 (about 300 rows a day), its rows repeated with other project
ids up to the target row count, cached under ``bench/.data/``. The rows are loaded once per run into
a day-partitioned billing table of the emulator (local-bigquery, started by the benchmark). Two
approaches run on the same rows, each in a fresh child process (spawned; timed after imports):

- ``bigquery`` (type ``GCP``): the month's manifest from the table's partition days, every day's rows
  paged into CSV text and archived (the ``report_files`` step), then converted to line-item Parquet.
- ``local`` (type ``GCP-local``): the manifest of the export CSV in a folder, the file archived and
  converted the same way.

``read`` is the manifest plus the archived CSV (where the readers differ); ``convert`` is the same code
on both sides. The emulator's own CPU is not in the figures (it runs in its process, as BigQuery would
run remotely). Line-item cost is compared to the exact sum over the export's text. Call :func:`run`.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.measure import measure

NAME = "ingest_gcp"
DATA_DIR = Path(__file__).resolve().parent / ".data"
MONTH = date(2026, 11, 1)
PROJECT = "koku-bench-gcp"
DATASET = "billing"
TABLE = "gcp_billing_export_resource_v1_0B0E0C_000000_000001"
SCHEMA = "org1234567"
PROVIDER_UUID = "0d8f5e1c-2b7a-4c3e-9f61-7a2b3c4d5e6f"
APPROACHES = ("bigquery", "local")


# ------------------------------------------------------------------------------------------ data


def dataset(rows_target: int) -> Path:
    """A folder holding ``export.csv``: the nise November export repeated to ``rows_target`` rows (cached)."""
    home = DATA_DIR / f"gcp-month-{rows_target}"
    export = home / "bucket" / "export.csv"
    if (home / "complete").exists():
        return export.parent
    shutil.rmtree(home, ignore_errors=True)
    export.parent.mkdir(parents=True)
    from koku_devtools.nise_reports import generate

    print(f"generating a nise GCP month repeated to {rows_target:,} rows (cached in {home}) ...", flush=True)
    (source,) = sorted(generate(home / "nise", MONTH, date(2026, 12, 1), kinds=("gcp",))["gcp"].rglob("*.csv"))
    with source.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    project = header.index("project.id")
    with export.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(rows_target):
            row = list(rows[i % len(rows)])
            row[project] = f"{row[project]}-{i // len(rows)}"
            writer.writerow(row)
    shutil.rmtree(home / "nise")
    (home / "complete").touch()
    return export.parent


def raw_cost(bucket: Path) -> Decimal:
    """Exact cost of invoice month 202611 over the export's text."""
    with (bucket / "export.csv").open(newline="", encoding="utf-8") as fh:
        return sum((Decimal(r["cost"]) for r in csv.DictReader(fh) if r["invoice.month"] == "202611"), Decimal(0))


# ------------------------------------------------------------------------------------ approaches


def _source(approach: str, bucket: Path, endpoint: str) -> Any:
    from koku_dagster.providers.base import CloudEndpoints, ProviderContext, ReportAccess
    from koku_dagster.providers.gcp import GCP, GCP_LOCAL

    kind = GCP if approach == "bigquery" else GCP_LOCAL
    ctx = ProviderContext(
        uuid=PROVIDER_UUID, name="bench", type=kind.name, schema=SCHEMA, credentials={"project_id": PROJECT},
        data_source={"dataset": DATASET, "table_id": TABLE, "bucket": str(bucket)}, setup_complete=False,
        active=True, paused=False,
    )  # fmt: skip
    access = ReportAccess((bucket.parent,), lambda *_: None, CloudEndpoints(gcp_bigquery_url=endpoint))
    return kind, kind.report_source(ctx, access)


def _read_and_convert(approach: str, bucket: Path, endpoint: str, out: Path) -> dict[str, Any]:
    """Manifest, archived CSV, line-item Parquet; the seconds of each part and the line-item figures."""
    from koku_dagster.reports.archive import ArchivedReports, archive_file

    started = time.perf_counter()
    kind, source = _source(approach, bucket, endpoint)
    manifest = source.find_manifest(MONTH)
    assert manifest is not None
    archive = out / "csv"
    size = sum(archive_file(source, f.key, archive / f.name) for f in manifest.files)
    read_s = time.perf_counter() - started
    items = kind.convert_manifest(
        ArchivedReports(archive, manifest), manifest, schema=SCHEMA, provider_uuid=PROVIDER_UUID, out_root=out
    )
    return {
        "rows": items.stats.rows,
        "files": len(manifest.files),
        "csv_mb": size / 2**20,
        "read_s": read_s,
        "convert_s": time.perf_counter() - started - read_s,
        "cost": str(items.stats.raw("cost")),
    }


def _check(result: dict[str, Any]) -> dict[str, Any]:
    return result


def _measure(approach: str, bucket: Path, endpoint: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-gcp-{approach}-") as out:
        return measure(_read_and_convert, (approach, bucket, endpoint, Path(out)), _check, approach)


def _load(bucket: Path, workdir: Path) -> tuple[Any, float]:
    """The emulator, started, with the export loaded into the billing table; and the load seconds."""
    from koku_devtools.cloud_exports import create_gcp_billing_table, load_gcp_export
    from koku_devtools.services import LocalBigQuery

    server = LocalBigQuery(workdir=workdir, project=PROJECT).start()
    started = time.perf_counter()
    client = server.client()
    create_gcp_billing_table(client, f"{PROJECT}.{DATASET}.{TABLE}")
    load_gcp_export(client, f"{PROJECT}.{DATASET}.{TABLE}", bucket / "export.csv")
    return server, time.perf_counter() - started


def run(rows_target: int = 50_000, repeats: int = 3) -> list[dict[str, Any]]:
    """Generate (or reuse) the data, load it into the emulator, run both approaches ``repeats`` times
    interleaved, print and return one row per approach (median times, rows/s, ratio to ``local``)."""
    from bench._util import machine, table

    bucket = dataset(rows_target)
    raw = raw_cost(bucket)
    with tempfile.TemporaryDirectory(prefix="bench-bigquery-") as workdir:
        server, load_s = _load(bucket, Path(workdir))
        try:
            runs: dict[str, list[dict[str, Any]]] = {a: [] for a in APPROACHES}
            for _ in range(repeats):
                for approach in APPROACHES:
                    runs[approach].append(_measure(approach, bucket, server.endpoint))
        finally:
            server.stop()
    rows = [_summary(approach, results, raw) for approach, results in runs.items()]
    local = rows[-1]
    for row in rows:
        row["read_vs_local"] = row["read_s"] / local["read_s"]
        row["total_vs_local"] = row["wall_s"] / local["wall_s"]
    facts = machine()
    print(
        f"\nGCP invoice month {MONTH:%Y-%m}, {rows[0]['rows']:,} rows in {rows[0]['files']} partition days, median of "
        f"{repeats}; raw cost {raw:.2f}; loading the emulator took {load_s:.0f} s; {facts['nproc']} CPUs, "
        f"{facts['memory']} RAM, load avg {os.getloadavg()[0]:.1f}"
    )
    headers = ["approach", "read s", "read rows/s", "convert s", "total s", "peak RSS MB", "read x local",
               "total x local", "cost = raw"]  # fmt: skip
    print(table(headers, [_cells(r) for r in rows]))
    return rows


def _summary(approach: str, results: list[dict[str, Any]], raw: Decimal) -> dict[str, Any]:
    def median(key: str) -> float:
        return float(sorted(r[key] for r in results)[len(results) // 2])

    last = results[-1]
    return {
        "benchmark": NAME,
        "approach": approach,
        "rows": last["rows"],
        "files": last["files"],
        "read_s": median("read_s"),
        "convert_s": median("convert_s"),
        "wall_s": median("wall_s"),
        "read_rows_per_s": last["rows"] / median("read_s"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "cost_ok": all(abs(Decimal(r["cost"]) - raw) < Decimal("0.005") for r in results),
    }


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["approach"],
        f"{row['read_s']:.2f}",
        f"{row['read_rows_per_s']:,.0f}",
        f"{row['convert_s']:.2f}",
        f"{row['wall_s']:.2f}",
        f"{row['peak_rss_mb']:.0f}",
        f"{row['read_vs_local']:.2f}",
        f"{row['total_vs_local']:.2f}",
        "yes" if row["cost_ok"] else "NO",
    ]


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
