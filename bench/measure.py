"""Shared by the ingestion benchmarks: run one approach in a fresh process and measure it, then
summarise repeated runs against the two baselines (``duckdb`` and ``pandas``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import resource
import time
from collections.abc import Callable
from typing import Any


def duckdb_default() -> Any:
    """DuckDB with its default settings (all cores, 80 % of RAM), UTC session, no progress bar."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
    return con


def peak_rss_kb() -> int:
    """Peak RSS of this process since it started its program (``VmHWM``), or of any child it waited for.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that over ``execve``, so a spawned process
    would report at least the peak RSS of the parent that started it.
    """
    hwm = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
                break
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _child(
    run: Callable[..., Any], check: Callable[[Any], dict[str, Any]], args: tuple[Any, ...], results: Any
) -> None:
    """Runs in a spawned process: time ``run(*args)``, then ``check`` its result (not timed); report
    ``check``'s figures with wall and CPU seconds and the peak RSS of this process and its children."""
    started, cpu_before = time.perf_counter(), os.times()
    value = run(*args)
    wall, cpu_after = time.perf_counter() - started, os.times()
    cpu = sum(
        getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("user", "system", "children_user", "children_system")
    )
    facts = check(value)
    results.put({**facts, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_kb() / 1024})


def measure(
    run: Callable[..., Any], args: tuple[Any, ...], check: Callable[[Any], dict[str, Any]], name: str
) -> dict[str, Any]:
    """``run(*args)`` in a fresh spawned process (timed after imports); ``run`` and ``check`` must be
    module-level functions. Returns ``check``'s dict plus ``wall_s``, ``cpu_s`` and ``peak_rss_mb``."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child, args=(run, check, args, results))
    proc.start()
    while proc.is_alive() or not results.empty():
        try:
            result: dict[str, Any] = results.get(timeout=1)
        except queue.Empty:
            continue
        proc.join()
        return result
    raise RuntimeError(f"{name} run failed (exit code {proc.exitcode})")


def summarise(benchmark: str, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per approach from its runs: median wall and CPU time, highest peak RSS, rows and
    rows/s of the last run, and ratios of the median wall time to the ``duckdb`` and ``pandas`` ones."""
    rows: list[dict[str, Any]] = []
    for approach, results in runs.items():
        walls = sorted(r["wall_s"] for r in results)
        last = results[-1]
        wall = walls[len(walls) // 2]
        rows.append(
            {
                "benchmark": benchmark,
                "approach": approach,
                "rows": last["rows"],
                "wall_s": wall,
                "wall_s_all": [round(w, 2) for w in walls],
                "cpu_s": sorted(r["cpu_s"] for r in results)[len(results) // 2],
                "rows_per_s": last["rows"] / wall,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                "summary_rows": last["summary_rows"],
            }
        )
    by_name = {r["approach"]: r for r in rows}
    for row in rows:
        row["vs_duckdb"] = row["wall_s"] / by_name["duckdb"]["wall_s"]
        row["vs_pandas"] = row["wall_s"] / by_name["pandas"]["wall_s"]
    return rows


HEADERS = [
    "approach",
    "wall s (median)",
    "runs",
    "CPU s",
    "rows/s",
    "peak RSS MB",
    "x (a) duckdb",
    "x (b) pandas",
    "summary rows",
]


def cells(row: dict[str, Any]) -> list[str]:
    """The :data:`HEADERS` cells of a :func:`summarise` row."""
    return [
        row["approach"],
        f"{row['wall_s']:.2f}",
        " ".join(map(str, row["wall_s_all"])),
        f"{row['cpu_s']:.1f}",
        f"{row['rows_per_s']:,.0f}",
        f"{row['peak_rss_mb']:.0f}",
        f"{row['vs_duckdb']:.2f}",
        f"{row['vs_pandas']:.2f}",
        f"{row['summary_rows']:,}",
    ]
