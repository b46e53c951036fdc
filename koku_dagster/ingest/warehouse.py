"""The DuckDB catalog: one view per summary table, and ``focus_costs``, over their Parquet files.

``duckdb -readonly $KOKU_HOME/warehouse.duckdb -c "SELECT * FROM reporting_awscostentrylineitem_daily_summary"``

The catalog is rebuilt in a new file that then replaces the old one, so an analyst holding the
catalog open (DuckDB locks the file it opened) never makes a step fail: their connection keeps
the previous catalog, a new connection sees the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb

SUMMARY_ROOT = "data/summary"
FOCUS_ROOT = "data/focus"
FOCUS_VIEW = "focus_costs"
_PARTITION_FILES = "source=*/year=*/month=*/*.parquet"


def _view_folders(out_root: Path) -> dict[str, Path]:
    """View name -> the folder whose ``source=*/year=*/month=*`` Parquet files it reads."""
    root = out_root / SUMMARY_ROOT
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()} if root.exists() else {}
    folders[FOCUS_VIEW] = out_root / FOCUS_ROOT
    return {name: folder for name, folder in folders.items() if any(folder.glob(_PARTITION_FILES))}


def refresh_views(warehouse: Path, out_root: Path) -> list[str]:
    """Rebuild the catalog with a view for every table that has files; return the view names."""
    folders = _view_folders(out_root)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    fd, staged_name = tempfile.mkstemp(prefix=".warehouse-", suffix=".duckdb", dir=warehouse.parent)
    os.close(fd)
    staged = Path(staged_name)
    staged.unlink()  # DuckDB creates the file itself
    try:
        with duckdb.connect(str(staged)) as con:
            for name, folder in folders.items():
                pattern = str(folder / _PARTITION_FILES).replace("'", "''")
                con.execute(
                    f'CREATE VIEW "{name}" AS SELECT * FROM '
                    f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
                )
        os.replace(staged, warehouse)
    finally:
        staged.unlink(missing_ok=True)
        Path(f"{staged}.wal").unlink(missing_ok=True)
    return list(folders)
