"""The DuckDB catalog: an analyst holding it open never makes a refresh (and so a summary step) fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

from koku_dagster.ingest.warehouse import refresh_views


def _write_rows(folder: Path, cost: float) -> None:
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT {cost} AS cost) TO '{folder / 'part-0.parquet'}' (FORMAT parquet)")


def test_refresh_while_an_analyst_holds_the_catalog_open(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    _write_rows(tmp_path / "data/summary/table_a/source=u1/year=2026/month=11", 1.5)
    assert refresh_views(warehouse, tmp_path) == ["table_a"]

    holder = subprocess.Popen(  # another process keeps a read-only connection, as the README shows
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(warehouse)!r}, read_only=True)
            print(con.execute("SELECT sum(cost) FROM table_a").fetchone()[0], flush=True)
            sys.stdin.readline()
            print(con.execute("SELECT sum(cost) FROM table_a").fetchone()[0], flush=True)
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "1.5"
        _write_rows(tmp_path / "data/summary/table_b/source=u1/year=2026/month=11", 2.0)
        _write_rows(tmp_path / "data/focus/source=u1/year=2026/month=11", 3.0)
        assert refresh_views(warehouse, tmp_path) == ["table_a", "table_b", "focus_costs"]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "1.5"  # the analyst's session still works
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT sum(cost) FROM table_b").fetchone() == (2.0,)
        assert con.execute("SELECT sum(cost) FROM focus_costs").fetchone() == (3.0,)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".warehouse-")) == []


def test_a_table_without_files_has_no_view(tmp_path: Path) -> None:
    (tmp_path / "data/summary/empty_table").mkdir(parents=True)
    _write_rows(tmp_path / "data/summary/full_table/source=u1/year=2026/month=11", 1.0)
    assert refresh_views(tmp_path / "warehouse.duckdb", tmp_path) == ["full_table"]
