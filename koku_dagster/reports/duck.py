"""DuckDB helpers: a bounded-memory connection, and query results written as Parquet."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet file written by :func:`copy_to_parquet`."""

    path: Path
    rows: int
    bytes: int


def connect(work_dir: Path | None = None, memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB on every usable core, limited to ``memory_limit`` (spilling to ``work_dir``
    if given), session time zone UTC."""
    config: dict[str, Any] = {
        "threads": len(os.sched_getaffinity(0)),
        "memory_limit": memory_limit,
        "preserve_insertion_order": False,
    }
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(work_dir / "duckdb-spill")
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
    return con


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any], out_path: Path) -> WrittenFile:
    """Run ``query`` (named ``$params``) and write its result to one zstd Parquet file."""
    target = str(out_path).replace("'", "''")
    stats = con.execute(
        f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd, RETURN_STATS)", params
    ).fetchall()
    return WrittenFile(out_path, sum(int(s[1]) for s in stats), sum(int(s[2]) for s in stats))
