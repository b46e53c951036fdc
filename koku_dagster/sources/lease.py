"""A lease row around the sources pass: one evaluation at a time applies events.

A sensor evaluation that outlives Dagster's timeout can overlap the next one. The pass takes the
lease first (an atomic conditional UPDATE, the same on SQLite and PostgreSQL) and gives up at once
when another holder's lease has not expired; every transaction that commits a batch's effects
renews the lease in the same transaction (:meth:`SyncLease.fence`), so a pass whose lease was
taken over meanwhile commits nothing.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from koku_dagster.infra.db.schema import sync_lease
from koku_dagster.infra.db.types import utcnow

#: Leases a pass could not release because the database was away (engine URL, name, holder): the
#: pass is over, so the next pass in this process frees them instead of waiting for them to expire.
_UNRELEASED: set[tuple[str, str, str]] = set()


class LeaseLost(RuntimeError):
    """Another pass holds the lease now: this one must not commit."""


class SyncLease:
    """The lease named ``name``, held for at most ``seconds`` past the last acquisition or renewal."""

    def __init__(self, engine: sa.Engine, name: str, seconds: float) -> None:
        self.engine = engine
        self.name = name[:64]
        self.seconds = seconds
        self.holder = uuid.uuid4().hex

    def _take(self, conn: sa.Connection, *, only_mine: bool) -> bool:
        now = utcnow()
        mine = sync_lease.c.holder == self.holder
        free = sa.or_(sync_lease.c.holder.is_(None), sync_lease.c.expires_at.is_(None), sync_lease.c.expires_at < now)
        query = (
            sa.update(sync_lease)
            .where(sync_lease.c.name == self.name, mine if only_mine else sa.or_(mine, free))
            .values(holder=self.holder, expires_at=now + timedelta(seconds=self.seconds))
        )
        return conn.execute(query).rowcount == 1

    def _key(self, holder: str) -> tuple[str, str, str]:
        return (str(self.engine.url), self.name, holder)

    def acquire(self) -> bool:
        """Take the lease unless another holder's lease is still valid."""
        with self.engine.begin() as conn:
            for key in [k for k in _UNRELEASED if k[:2] == self._key("")[:2]]:
                self._free(conn, key[2])
                _UNRELEASED.discard(key)
            if self._take(conn, only_mine=False):
                return True
            exists = conn.execute(sa.select(sync_lease.c.name).where(sync_lease.c.name == self.name)).first()
        if exists is not None:
            return False
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(sync_lease).values(name=self.name, holder=None, expires_at=None))
        except sa.exc.IntegrityError:
            pass  # another pass created it a moment ago
        with self.engine.begin() as conn:
            return self._take(conn, only_mine=False)

    def fence(self, conn: sa.Connection) -> None:
        """Renew the lease within ``conn``'s transaction; :class:`LeaseLost` if it is no longer ours."""
        if not self._take(conn, only_mine=True):
            raise LeaseLost("the sources pass lease was taken over; this pass commits nothing more")

    def _free(self, conn: sa.Connection, holder: str) -> None:
        conn.execute(
            sa.update(sync_lease)
            .where(sync_lease.c.name == self.name, sync_lease.c.holder == holder)
            .values(holder=None, expires_at=None)
        )

    def release(self) -> None:
        try:
            with self.engine.begin() as conn:
                self._free(conn, self.holder)
        except sa.exc.OperationalError:
            _UNRELEASED.add(self._key(self.holder))
            raise
