from __future__ import annotations

from pathlib import Path

import dagster as dg


class IngestionResource(dg.ConfigurableResource):
    """Ingestion settings (CONTRACT section 1) and the local working places under ``KOKU_HOME``."""

    home: str
    initial_ingest_num_months: int = 3
    polling_interval_seconds: int = 86400
    retain_num_months: int = 4

    def work_dir(self) -> Path:
        path = Path(self.home) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def warehouse_path(self) -> Path:
        return Path(self.home) / "warehouse.duckdb"
