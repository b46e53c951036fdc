from __future__ import annotations

import threading

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.migrate import migrate


class ApplicationDatabase(dg.ConfigurableResource):
    """The application tables (``KOKU_DATABASE_URL``); the schema is migrated on this resource's first use."""

    database_url: str
    _migrated: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def engine(self) -> sa.Engine:
        with self._lock:
            if not self._migrated:
                migrate(self.database_url)
                self._migrated = True
        return get_engine(self.database_url)
