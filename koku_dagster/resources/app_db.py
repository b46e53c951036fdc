from __future__ import annotations

import threading

import dagster as dg
import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.migrate import migrate

_migrated: set[str] = set()
_lock = threading.Lock()


class ApplicationDatabase(dg.ConfigurableResource):
    """The application tables (``KOKU_DATABASE_URL``); the schema is migrated on first use."""

    database_url: str

    def engine(self) -> sa.Engine:
        with _lock:
            if self.database_url not in _migrated:
                migrate(self.database_url)
                _migrated.add(self.database_url)
        return get_engine(self.database_url)
