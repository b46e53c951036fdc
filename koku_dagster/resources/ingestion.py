from __future__ import annotations

from pathlib import Path

import dagster as dg


class IngestionResource(dg.ConfigurableResource):
    """Ingestion settings (``KOKU_INITIAL_INGEST_NUM_MONTHS``, ``KOKU_POLLING_INTERVAL_SECONDS``,
    ``KOKU_RETAIN_NUM_MONTHS``) and the local working places under ``KOKU_HOME``."""

    home: str
    initial_ingest_num_months: int
    polling_interval_seconds: int
    retain_num_months: int

    def work_dir(self) -> Path:
        path = Path(self.home) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def warehouse_path(self) -> Path:
        return Path(self.home) / "warehouse.duckdb"
