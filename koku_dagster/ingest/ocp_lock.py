"""One rule for OpenShift line items: payload writers and summary readers never overlap (no Dagster).

An OpenShift payload rewrites day files and swaps month partitions of the line items; a summary
step reading them meanwhile could see a month half replaced. Every payload run holds this lock
exclusively while it processes, every OpenShift ``daily_line_items`` / ``daily_summary`` step holds
it shared, however the run started (sensor, UI, backfill). Other provider types never take it.

Two layers, both released when their holder dies, so a killed run never leaves the lock taken:

* given the application ``engine`` on PostgreSQL, a session-level advisory lock (shared or
  exclusive) on a connection of its own, held for the whole block: it works across machines, and
  the server drops it when the connection ends (the holder's process or machine is gone);
* always, an ``flock`` on a file under ``KOKU_HOME``, for one machine (SQLite setups, and holders
  that do not name the database); the kernel drops it with its holder.

The advisory lock is taken first, then the ``flock``, by every holder, so two holders never wait
for each other in opposite order.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider

LOCK_NAME = "ocp-line-items.lock"
PUSHED_TYPES = ("OCP",)
#: The advisory lock's key (one 64-bit number per database): "koku" "ocp" in ASCII.
ADVISORY_KEY = 0x6B6F6B75_6F6370


class LockTimeout(TimeoutError):
    """The lock stayed taken longer than the caller was willing to wait."""


def _wait(try_take: Callable[[], bool], deadline: float, timeout: float, poll: float) -> None:
    while not try_take():
        if time.monotonic() >= deadline:
            raise LockTimeout(f"the OpenShift line items stayed locked for {timeout:.0f}s")
        time.sleep(poll)


@contextmanager
def _file_lock(home: Path, exclusive: bool, deadline: float, timeout: float, poll: float) -> Iterator[None]:
    folder = home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    with (folder / LOCK_NAME).open("a") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle.fileno(), mode)
            except BlockingIOError:
                return False
            return True

        _wait(take, deadline, timeout, poll)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(engine: sa.Engine, exclusive: bool, deadline: float, timeout: float, poll: float) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock on a connection used for nothing else (autocommit, so it
    is never idle in a transaction). The connection is discarded afterwards, never returned to the pool
    still holding the lock."""
    suffix = "" if exclusive else "_shared"
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        take = sa.text(f"SELECT pg_try_advisory_lock{suffix}(:key)").bindparams(key=ADVISORY_KEY)
        _wait(lambda: bool(conn.execute(take).scalar()), deadline, timeout, poll)
        yield
    finally:
        conn.invalidate()  # closes the session: the server releases whatever it held
        conn.close()


@contextmanager
def ocp_line_items_lock(
    home: Path, *, exclusive: bool, timeout: float, poll: float = 0.2, engine: sa.Engine | None = None
) -> Iterator[None]:
    """Hold the OpenShift line-items lock (exclusive for writers, shared for readers); across machines
    when ``engine`` is the application database on PostgreSQL, on this machine otherwise."""
    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        if engine is not None and engine.dialect.name == "postgresql":
            stack.enter_context(_advisory_lock(engine, exclusive, deadline, timeout, poll))
        stack.enter_context(_file_lock(home, exclusive, deadline, timeout, poll))
        yield


def pushes_line_items(engine: sa.Engine, provider_uuid: str) -> bool:
    """Whether the provider's line items are written by payloads (OpenShift), i.e. need the lock."""
    with engine.connect() as conn:
        kind = conn.execute(sa.select(provider.c.type).where(provider.c.uuid == provider_uuid)).scalar()
    return kind in PUSHED_TYPES
