"""The DuckDB catalog: one view per summary table over its Parquet, for ad-hoc queries.

``duckdb $KOKU_HOME/warehouse.duckdb -c "SELECT * FROM reporting_awscostentrylineitem_daily_summary"``
"""

from __future__ import annotations

from pathlib import Path

import duckdb

SUMMARY_ROOT = "data/summary"


def refresh_views(warehouse: Path, out_root: Path) -> list[str]:
    """(Re)create a view for every summary table that has files; return the table names."""
    root = out_root / SUMMARY_ROOT
    tables = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    made = []
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        for table in tables:
            pattern = str(root / table / "source=*" / "year=*" / "month=*" / "*.parquet").replace("'", "''")
            if not any((root / table).glob("source=*/year=*/month=*/*.parquet")):
                con.execute(f'DROP VIEW IF EXISTS "{table}"')
                continue
            con.execute(
                f'CREATE OR REPLACE VIEW "{table}" AS '
                f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
            )
            made.append(table)
    return made
