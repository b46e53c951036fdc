"""The schema command creates and upgrades idempotently, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.migrate import SCHEMA_VERSION, migrate


def test_upgrade_from_version_1_and_rerun(db_url: str) -> None:
    engine = get_engine(db_url)  # the fixture already migrated it to the current version
    assert migrate(db_url) == 0
    with engine.begin() as conn:  # put the database back to version 1
        conn.execute(sa.text("ALTER TABLE api_sources DROP COLUMN application_id"))
        conn.execute(sa.text("DELETE FROM koku_schema_migration WHERE version > 1"))
    assert migrate(db_url) == SCHEMA_VERSION - 1
    columns = {c["name"] for c in sa.inspect(engine).get_columns("api_sources")}
    assert "application_id" in columns
    assert migrate(db_url) == 0


def test_cli_migrate(tmp_path, monkeypatch, capsys) -> None:
    from koku_dagster.cli import main
    from koku_dagster.infra import settings

    monkeypatch.setenv("KOKU_HOME", str(tmp_path))
    settings.get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 0
        assert main(["migrate"]) == 0
    finally:
        settings.get_settings.cache_clear()
    out = capsys.readouterr().out
    assert f"schema at version {SCHEMA_VERSION} ({SCHEMA_VERSION} step(s) applied)" in out
    assert f"schema at version {SCHEMA_VERSION} (0 step(s) applied)" in out
    assert (tmp_path / "koku.db").exists()


def test_postgres_connections_have_bounded_waits(db_url: str) -> None:
    """A hung statement or lock wait fails in bounded time instead of holding a tick or run for ever."""
    with get_engine(db_url).connect() as conn:
        if db_url.startswith("sqlite"):
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 30000
            return
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "2min"
        assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "30s"
