"""Engines for the application database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

#: One engine (and so one connection pool) per URL and process: pools must be shared to bound connections.
_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()

#: PostgreSQL: a server that does not answer, a statement or a lock wait that hangs, fails in bounded time.
_PG_CONNECT_TIMEOUT_SECONDS = 10
_PG_STATEMENT_TIMEOUT_MS = 120_000
_PG_LOCK_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_app_engine(url: str) -> sa.Engine:
    """A new engine for ``url``; SQLite gets WAL mode and a busy timeout.

    ``hide_parameters`` keeps bound values (credentials, identity headers) out of error texts.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        hide_parameters=True,
        connect_args={
            "connect_timeout": _PG_CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={_PG_STATEMENT_TIMEOUT_MS} -c lock_timeout={_PG_LOCK_TIMEOUT_MS}",
        },
    )


def get_engine(url: str) -> sa.Engine:
    """The process-wide engine for ``url`` (engines hold connection pools)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_app_engine(url)
        return engine


def dispose_engine(url: str) -> None:
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
