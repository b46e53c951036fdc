"""``python -m bench [--only sources|ingest_aws|ingest_ocp|ingest_gcp|scale] [--sources N] [--aws-rows N]
[--ocp-rows N] [--gcp-rows N] [--providers N]``: run the benchmarks, print tables."""

from __future__ import annotations

import argparse
import sys
import time

from bench import ingest_aws, ingest_gcp, ingest_ocp, scale, sources_sync
from bench._util import machine

BENCHMARKS = {
    sources_sync.NAME: sources_sync,
    ingest_aws.NAME: ingest_aws,
    ingest_ocp.NAME: ingest_ocp,
    ingest_gcp.NAME: ingest_gcp,
    scale.NAME: scale,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable); default: all"
    )
    parser.add_argument("--sources", type=int, default=2000, help="sources to create (default 2000)")
    parser.add_argument(
        "--baseline-sources",
        type=int,
        default=500,
        help="run the one-message-at-a-time baseline on the events of the first N sources "
        "and extrapolate its rates (default 500; 0 = all sources)",
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument(
        "--latency-ms",
        default="0,20",
        help="comma-separated scenarios: delay every stand-in API answer by this many ms, to "
        "model a remote Platform Sources (default '0,20': loopback, then +20 ms)",
    )
    parser.add_argument(
        "--latency-backends",
        default="sqlite",
        help="backends to run in the scenarios with added latency (default sqlite)",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="SyncLimits.workers for ours (default 8, the production default)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="run a measurement again (up to this many times) when other processes used more "
        "than a quarter of a CPU meanwhile; the least disturbed run is reported (default 1)",
    )
    parser.add_argument("--no-memory-check", action="store_true", help="skip the N/2-sources memory run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite files)")
    parser.add_argument(
        "--aws-rows",
        type=int,
        default=500_000,
        help="rows of the nise AWS month for ingest_aws (default 500000; cached in bench/.data)",
    )
    parser.add_argument(
        "--ocp-rows",
        type=int,
        default=1_000_000,
        help="rows of the nise OpenShift month for ingest_ocp (default 1000000; cached in bench/.data)",
    )
    parser.add_argument(
        "--gcp-rows",
        type=int,
        default=50_000,
        help="rows of the GCP month in the BigQuery emulator for ingest_gcp (default 50000; cached in bench/.data)",
    )
    parser.add_argument(
        "--providers",
        type=int,
        default=5000,
        help="scale: sources created in one burst (default 5000; 1000 and 2000 are measured too, for the projection)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="ingest_aws, ingest_ocp, ingest_gcp: runs per approach (median reported)"
    )
    options = parser.parse_args(argv)
    selected = list(dict.fromkeys(options.only or BENCHMARKS))

    started = time.monotonic()
    rows = []
    ingest_rows: list[dict] = []
    scale_rows: list[dict] = []
    for name in selected:
        if name == ingest_aws.NAME:  # prints its own table as it finishes
            ingest_rows += ingest_aws.run(options.aws_rows, options.repeats)
        elif name == ingest_ocp.NAME:
            ingest_rows += ingest_ocp.run(options.ocp_rows, options.repeats)
        elif name == scale.NAME:  # prints its own tables
            scale_rows += scale.run(options)
        elif name == ingest_gcp.NAME:
            ingest_rows += ingest_gcp.run(options.gcp_rows, options.repeats)
        else:
            rows.extend(BENCHMARKS[name].run(options))
    facts = machine()
    print()
    print(
        f"machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['memory']} RAM, Python {facts['python']}, "
        f"Linux {facts['kernel']}"
    )
    print(
        f"options: sources={options.sources} baseline_sources={options.baseline_sources or options.sources} "
        f"latency_ms={options.latency_ms} workers={options.workers}"
    )
    print()
    if sources_sync.NAME in selected:
        print(sources_sync.report([r for r in rows if r.benchmark == sources_sync.NAME]))
    print()
    bad = [r for r in rows if not r.ok] + [r for r in ingest_rows if not r.get("cost_ok", r.get("usage_ok"))]
    bad += [r for r in scale_rows if not r["ok"]]
    print(
        f"total bench time {time.monotonic() - started:.0f} s; "
        + (f"{len(bad)} run(s) FAILED their correctness check" if bad else "all correctness checks passed")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
