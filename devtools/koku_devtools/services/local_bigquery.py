"""BigQuery emulator: ``local-bigquery`` (PyPI) in its own Python >= 3.13 environment, run offline.

As published, 0.4.0 asks for DuckDB 2.0 and downloads DuckDB extensions at run time. The harness
installs it with ``--no-deps`` beside its other requirements and ``duckdb==1.5.5``, and puts the
``icu``, ``ducklake`` and ``spatial`` extensions (from the ``duckdb-extension-*`` wheels) into
``$HOME/.duckdb/extensions`` of a private ``HOME`` that the emulator process runs with.

Facts the readers rely on (see ``tests/test_emulators.py``):

- Tables with ``_PARTITIONTIME`` are made by DDL (``PARTITION BY _PARTITIONDATE``) and filled by
  ``INSERT ... (_PARTITIONTIME, ...)`` with explicit values; :func:`create_billing_table` does both.
- Read results with ``create_bqstorage_client=False`` (the emulator's Storage Read API on
  :attr:`LocalBigQuery.grpc_port` is plain gRPC).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from koku_devtools.services.cache import cached_install, run_step
from koku_devtools.services.processes import LOOPBACK, ProcessService, ServiceError, free_port

if TYPE_CHECKING:
    from google.cloud import bigquery

PACKAGE = "local-bigquery==0.4.0"
DUCKDB_VERSION = "1.5.5"
#: local-bigquery 0.4.0's requirements (its wheel's metadata) with versions that were seen to work,
#: and DuckDB 1.5.5 in place of the 2.0 it asks for.
REQUIREMENTS = (
    f"duckdb=={DUCKDB_VERSION}",
    "fastapi==0.165.0",
    "fastavro==1.13.1",
    "google-cloud-bigquery-storage==2.43.0",
    "grpcio==1.85.3",
    "mini-racer==0.14.1",
    "numpy==2.5.5",
    "prompt-toolkit==3.0.53",
    "pyarrow==26.0.1",
    "pydantic-settings==2.16.3",
    "pygments==2.21.0",
    "sqlglot==30.31.0",
    "uvicorn==0.55.0",
)
EXTENSIONS = ("icu", "ducklake", "spatial")
MIN_PYTHON = (3, 13)

# Runs in the side environment with HOME set to the private home: copies the extension files shipped
# by the duckdb-extension-* wheels to where DuckDB autoloads them from (the wheels are removed after).
_INSTALL_EXTENSIONS = """
import importlib, pathlib, sys, duckdb
con = duckdb.connect()
for name in sys.argv[1:]:
    package = importlib.import_module(f"duckdb_extension_{name}")
    (path,) = pathlib.Path(package.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension")
    con.execute(f"FORCE INSTALL '{path}'")
    con.execute(f"LOAD {name}")
"""


def find_python313() -> Path:
    """A Python >= 3.13 interpreter: on ``PATH``, else under pyenv. Raises :class:`ServiceError` if none."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (13, 14, 15)]
    roots = [Path.home() / ".pyenv"]
    try:
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
        roots.insert(0, Path(done.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    for root in roots:
        candidates += sorted(glob.glob(str(root / "versions" / "3.1[3-5]*" / "bin" / "python3.1[3-5]")))
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and tuple(map(int, done.stdout.split())) >= MIN_PYTHON:
            return Path(candidate)
    raise ServiceError(
        "the BigQuery emulator (local-bigquery) needs Python >= 3.13 and none was found on PATH or under "
        f"pyenv ({', '.join(map(str, roots))}): install one, e.g. `pyenv install 3.13`"
    )


def _build(folder: Path) -> None:
    python = folder / "venv" / "bin" / "python"
    run_step([str(find_python313()), "-m", "venv", str(folder / "venv")], folder)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    wheels = [f"duckdb-extension-{name}=={DUCKDB_VERSION}" for name in EXTENSIONS]
    run_step([*pip, *REQUIREMENTS, *wheels], folder)
    run_step([*pip, "--no-deps", PACKAGE], folder)
    (folder / "home").mkdir()
    run_step([str(python), "-c", _INSTALL_EXTENSIONS, *EXTENSIONS], folder, env={"HOME": str(folder / "home")})
    run_step([str(python), "-m", "pip", "uninstall", "-q", "-y", *(w.partition("==")[0] for w in wheels)], folder)


def ensure_local_bigquery() -> Path:
    """The cached installation (``venv/`` and the private ``home/``), installed on first use."""
    stamp = json.dumps([PACKAGE, *REQUIREMENTS, *EXTENSIONS])
    return cached_install("local-bigquery", stamp, _build)


class LocalBigQuery(ProcessService):
    """The BigQuery REST API (and Storage gRPC API) of ``local-bigquery`` on 127.0.0.1.

    Any project id works; ``project`` is the emulator's default one. Data lives in ``workdir/data``
    and survives a restart on the same ``workdir``.
    """

    name = "local-bigquery"
    start_timeout = 60.0

    def __init__(self, port: int | None = None, workdir: Path | None = None, *, project: str = "koku-demo") -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.grpc_port = 0
        self.project = project
        self._install: Path | None = None

    @property
    def endpoint(self) -> str:
        """REST endpoint for ``client_options={"api_endpoint": ...}``, e.g. ``http://127.0.0.1:9050``."""
        return f"http://{LOOPBACK}:{self.port}"

    def client(self, project: str | None = None) -> bigquery.Client:
        """A ``google-cloud-bigquery`` client for this emulator (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=project or self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def _before_start(self) -> None:
        self._install = ensure_local_bigquery()
        self.port = self._requested_port or free_port()
        self.grpc_port = free_port()

    def _command(self) -> list[str]:
        assert self._install is not None
        return [
            str(self._install / "venv" / "bin" / "local-bigquery"),
            "serve",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--grpc-port", str(self.grpc_port),
            "--project", self.project,
            "--data-dir", str(self.workdir / "data"),
        ]  # fmt: skip

    def _env(self) -> Mapping[str, str]:
        assert self._install is not None
        return {"HOME": str(self._install / "home"), "PYTHONUNBUFFERED": "1"}

    def _ready(self) -> bool:
        url = f"{self.endpoint}/bigquery/v2/projects/{self.project}/datasets"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
