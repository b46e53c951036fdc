"""Create or upgrade the application schema; idempotent, run by ``koku-dagster migrate`` and at start-up."""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.schema import (
    metadata,
    ocp_payload_upload,
    provider,
    schema_migration,
    sources_parked_message,
    sync_lease,
)
from koku_dagster.infra.db.types import utcnow

log = logging.getLogger(__name__)


def _initial(conn: sa.Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _add_application_id(conn: sa.Connection) -> None:
    """Version 2: remember the cost application's id, so a status PATCH needs no lookup."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("api_sources")}
    if "application_id" not in columns:
        conn.execute(sa.text("ALTER TABLE api_sources ADD COLUMN application_id BIGINT"))


def _add_ocp_payload_upload(conn: sa.Connection) -> None:
    """Version 3: the durable record of OpenShift payload announcements and their outcome."""
    ocp_payload_upload.create(conn, checkfirst=True)


def _add_reachability(conn: sa.Connection) -> None:
    """Version 4: each provider's reachability check (existing providers are checked at once)."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns(provider.name)}
    stamp = provider.c.reachability_checked_timestamp.type.compile(dialect=conn.dialect)
    added = {
        "reachable": "BOOLEAN",
        "reachability_error": "TEXT",
        "reachability_checked_timestamp": stamp,
        "settings_version": "INTEGER NOT NULL DEFAULT 0",
        "ingest_pending": "VARCHAR(16)",
    }
    for name, kind in added.items():
        if name not in columns:
            conn.execute(sa.text(f"ALTER TABLE {provider.name} ADD COLUMN {name} {kind}"))


def _add_parked_messages_and_lease(conn: sa.Connection) -> None:
    """Version 5: events parked for a retry, and the lease of the sources pass."""
    sources_parked_message.create(conn, checkfirst=True)
    sync_lease.create(conn, checkfirst=True)


#: Ordered schema versions. Append new steps; never edit applied ones. Step 1 creates the
#: current tables on a new database, so later steps must tolerate finding their change done.
MIGRATIONS: list[tuple[int, Callable[[sa.Connection], None]]] = [
    (1, _initial),
    (2, _add_application_id),
    (3, _add_ocp_payload_upload),
    (4, _add_reachability),
    (5, _add_parked_messages_and_lease),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(url: str) -> int:
    """Bring the database at ``url`` to :data:`SCHEMA_VERSION`; return the number of steps applied."""
    engine = get_engine(url)
    applied = 0
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Serialise concurrent start-ups (webserver, daemon, code server).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242424242)"))
        schema_migration.create(conn, checkfirst=True)
        done = set(conn.execute(sa.select(schema_migration.c.version)).scalars())
        for version, step in MIGRATIONS:
            if version in done:
                continue
            step(conn)
            conn.execute(sa.insert(schema_migration).values(version=version, applied_at=utcnow()))
            applied += 1
            log.info("applied schema migration %s", version)
    return applied
