"""One rule for OpenShift line items: payload writers and summary readers never overlap (no Dagster).

An OpenShift payload rewrites day files and swaps month partitions of the line items; a summary
step reading them meanwhile could see a month half replaced. Every payload run holds this lock
exclusively while it processes, every OpenShift ``daily_line_items`` / ``daily_summary`` step holds
it shared, however the run started (sensor, UI, backfill). It is an ``flock`` on a file under
``KOKU_HOME``: the kernel releases it when its holder dies, so a killed run never leaves it taken.
Other provider types never take it.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider

LOCK_NAME = "ocp-line-items.lock"
PUSHED_TYPES = ("OCP",)


class LockTimeout(TimeoutError):
    """The lock stayed taken longer than the caller was willing to wait."""


@contextmanager
def ocp_line_items_lock(home: Path, *, exclusive: bool, timeout: float, poll: float = 0.2) -> Iterator[None]:
    """Hold the OpenShift line-items lock (exclusive for writers, shared for readers)."""
    folder = home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    with (folder / LOCK_NAME).open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"the OpenShift line items stayed locked for {timeout:.0f}s") from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def pushes_line_items(engine: sa.Engine, provider_uuid: str) -> bool:
    """Whether the provider's line items are written by payloads (OpenShift), i.e. need the lock."""
    with engine.connect() as conn:
        kind = conn.execute(sa.select(provider.c.type).where(provider.c.uuid == provider_uuid)).scalar()
    return kind in PUSHED_TYPES
