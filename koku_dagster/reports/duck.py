"""DuckDB helpers: a bounded-memory connection, literal file lists, and query results written as Parquet."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

#: Characters DuckDB expands in a file name (``{`` is literal to it).
_GLOB_CHARACTERS = frozenset("*?[")


def literal_files(paths: Iterable[Path | str]) -> list[str]:
    """File names as DuckDB's ``read_parquet``/``read_csv`` must get them to read exactly those files.

    DuckDB treats every name in a list as a glob pattern: a report key ``a*.parquet`` would also read
    ``ab.parquet``. Each glob character is put in a one-character class (``[*]``), which matches only
    itself. A name holding a glob character and a backslash cannot be escaped and is refused.
    """
    names = []
    for path in paths:
        name = str(path)
        if not _GLOB_CHARACTERS.isdisjoint(name):
            if "\\" in name:
                raise ValueError(f"file name cannot be given to DuckDB literally: {name!r}")
            name = "".join(f"[{c}]" if c in _GLOB_CHARACTERS else c for c in name)
        names.append(name)
    return names


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet file written by :func:`copy_to_parquet`."""

    path: Path
    rows: int
    bytes: int
    #: The files written: ``path`` itself, or the files below it with ``PER_THREAD_OUTPUT``.
    files: tuple[Path, ...] = ()


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


def copy_to_parquet(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any], out_path: Path, options: str = ""
) -> WrittenFile:
    """Run ``query`` (named ``$params``) and write its result to one zstd Parquet file (``options``: more
    COPY options, such as ``ROW_GROUP_SIZE 61440``; with ``PER_THREAD_OUTPUT true``, ``out_path`` is a folder)."""
    target = str(out_path).replace("'", "''")
    more = f", {options}" if options else ""
    stats = con.execute(
        f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd{more}, RETURN_STATS)", params
    ).fetchall()
    files = tuple(sorted(Path(s[0]) for s in stats))
    return WrittenFile(out_path, sum(int(s[1]) for s in stats), sum(int(s[2]) for s in stats), files)
