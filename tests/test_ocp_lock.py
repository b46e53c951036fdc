"""The OpenShift line-items lock on SQLite (an flock: one machine) and PostgreSQL (an advisory lock as well:
several machines, each with its own KOKU_HOME)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.ingest.ocp_lock import LockTimeout, ocp_line_items_lock

REPO = Path(__file__).resolve().parents[1]


def _taken(home: Path, engine: sa.Engine, *, exclusive: bool) -> bool:
    """Whether the lock is taken against a holder in ``home`` asking for ``exclusive`` (waits 0.3 s)."""
    try:
        with ocp_line_items_lock(home, exclusive=exclusive, timeout=0.3, poll=0.05, engine=engine):
            return False
    except LockTimeout:
        return True


def _advisory_locks(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar() or 0)


def test_writers_exclude_everyone_readers_share(db_url: str, tmp_path: Path) -> None:
    engine = get_engine(db_url)
    with ocp_line_items_lock(tmp_path, exclusive=False, timeout=1, engine=engine):
        assert not _taken(tmp_path, engine, exclusive=False)  # readers share
        assert _taken(tmp_path, engine, exclusive=True)
    with ocp_line_items_lock(tmp_path, exclusive=True, timeout=1, engine=engine):
        assert _taken(tmp_path, engine, exclusive=False)
        assert _taken(tmp_path, engine, exclusive=True)
    assert not _taken(tmp_path, engine, exclusive=True)  # released on leaving the block
    if engine.dialect.name == "postgresql":
        assert _advisory_locks(engine) == 0  # no pooled connection kept it


def test_a_holder_without_the_database_still_excludes_on_its_machine(db_url: str, tmp_path: Path) -> None:
    """A holder naming only KOKU_HOME (a single-host setup) and one naming the database meet on the flock."""
    engine = get_engine(db_url)
    with ocp_line_items_lock(tmp_path, exclusive=True, timeout=1):
        assert _taken(tmp_path, engine, exclusive=False)


def test_machines_with_their_own_home_meet_on_postgresql(db_url: str, tmp_path: Path) -> None:
    engine = get_engine(db_url)
    one, other = tmp_path / "machine-1", tmp_path / "machine-2"
    with ocp_line_items_lock(one, exclusive=True, timeout=1, engine=engine):
        # SQLite is one machine's database: there the lock is the flock, and another home is another lock.
        assert _taken(other, engine, exclusive=False) == (engine.dialect.name == "postgresql")


HOLDER = """
import sys, time
from pathlib import Path
from koku_dagster.infra.db.engine import get_engine
from koku_dagster.ingest.ocp_lock import ocp_line_items_lock
with ocp_line_items_lock(Path(sys.argv[2]), exclusive=True, timeout=10, engine=get_engine(sys.argv[1])):
    Path(sys.argv[3]).touch()
    time.sleep(120)
"""


def test_the_lock_dies_with_its_holder(db_url: str, tmp_path: Path) -> None:
    """kill -9 of a holder (another process, and on PostgreSQL another home): the lock is free at once."""
    engine = get_engine(db_url)
    holder_home = tmp_path / ("machine-1" if engine.dialect.name == "postgresql" else "home")
    mine = tmp_path / ("machine-2" if engine.dialect.name == "postgresql" else "home")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db_url, str(holder_home), str(ready)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the holder did not take the lock"
            time.sleep(0.05)
        assert _taken(mine, engine, exclusive=False)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        with ocp_line_items_lock(mine, exclusive=True, timeout=10, poll=0.05, engine=engine):
            waited = time.monotonic() - started
        assert waited < 5, waited
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("exclusive", [True, False])
def test_a_lock_not_given_up_times_out_with_a_clear_message(db_url: str, tmp_path: Path, exclusive: bool) -> None:
    engine = get_engine(db_url)
    with (
        ocp_line_items_lock(tmp_path, exclusive=True, timeout=1, engine=engine),
        pytest.raises(LockTimeout, match="stayed locked for 0s"),
        ocp_line_items_lock(tmp_path, exclusive=exclusive, timeout=0.2, poll=0.05, engine=engine),
    ):
        pass
