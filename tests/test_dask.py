"""A Dagster backfill whose runs execute their steps on a Dask cluster (``dagster-dask``): a scheduler and two
workers started as processes, each with its own working folder and KOKU_HOME (no shared disk), the object store
on S3 (SeaweedFS), the application database and the Dagster instance on PostgreSQL. A backfill of two providers
x two months gives exactly the summaries, FOCUS rows and manifests of a single-process run of the same reports.

How the backfill runs here: a ``PartitionBackfill`` of the ingest assets is submitted to the PostgreSQL instance
and executed by Dagster's backfill machinery (the backfill daemon's iteration, called in this process, as in
``test_dagster_postgres.py``). It launches one run per provider month through ``SyncInMemoryRunLauncher``, so
each run's orchestration happens in this process; the code location the backfill loads (``dask_definitions``:
the ingest assets with ``dask_executor`` as the default executor, which the implicit asset job of the backfill
takes) sends every step to the cluster, whose address is in the backfill's run config. In production the
launcher is Kubernetes' and the executor the default one; only where the steps run differs.

The report sources are ``aws-local`` folders both workers read, standing in for a cloud's bucket; nothing
the pipeline writes goes there."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from koku_dagster.assets.ingest import INGEST_ASSETS, daily_summary, provider_month_ingest
from koku_dagster.infra import settings
from koku_dagster.infra.db.engine import dispose_engine, get_engine
from koku_dagster.infra.db.migrate import migrate
from koku_dagster.infra.db.schema import customer, manifest, provider, provider_authentication, provider_billing_source
from koku_dagster.infra.db.schema import report_status as report_status_table
from koku_dagster.infra.db.types import utcnow
from koku_devtools.dagster_instance import write_instance
from koku_devtools.nise_reports import generate
from koku_devtools.services import EmbeddedPostgres, SeaweedS3
from koku_devtools.services.processes import LOOPBACK, free_port
from tests.test_dagster_postgres import IN_PROCESS_LAUNCH, run_backfill

REPO = Path(__file__).resolve().parents[1]
BUCKET = "koku"
PROVIDERS = ("d1d1d1d1-0000-4000-8000-000000000001", "d1d1d1d1-0000-4000-8000-000000000002")
#: Step logs stay with the worker that ran the step; nothing is written to a shared folder.
NO_COMPUTE_LOGS = """
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""
BACKFILL = "daskbackfill"


@dg.definitions
def dask_definitions() -> dg.Definitions:
    """The ingest assets with their steps on Dask, the resources from the settings of the process that loads
    them: every worker rebuilds them from its own environment (KOKU_HOME, the store's mirror)."""
    from dagster_dask import dask_executor

    from koku_dagster.definitions import build_resources

    return dg.Definitions(
        assets=INGEST_ASSETS, executor=dask_executor, resources=build_resources(settings.get_settings())
    )


@pytest.fixture
def records_opaque_to_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster-dask 0.29.27 hands Dagster's run record (a named tuple) to ``Client.submit``; current Dask walks
    tuple arguments looking for futures and trips on a record inside it that refuses iteration
    (``RunOpConcurrency``, set when a job uses pools). Named tuples are handed over as they are (this
    process only: it is the Dask client)."""
    import distributed.client
    from dask import _task_spec

    original = _task_spec.parse_input

    def parse_input(obj: Any) -> object:
        return obj if isinstance(obj, tuple) and hasattr(obj, "_fields") else original(obj)

    monkeypatch.setattr(_task_spec, "parse_input", parse_input)
    monkeypatch.setattr(distributed.client, "parse_input", parse_input)


def _months() -> list[date]:
    this_month = date.today().replace(day=1)
    return [(this_month - timedelta(days=1)).replace(day=1), this_month]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One nise AWS report per provider over the end of last month and the start of this one."""
    root = tmp_path_factory.mktemp("dask-reports")
    first = _months()[1]
    for uuid in PROVIDERS:
        generate(root / uuid, first - timedelta(days=2), first + timedelta(days=1), kinds=("aws",))
    return root


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(workdir=tmp_path_factory.mktemp("seaweed-dask"), buckets=(BUCKET,)) as server:
        yield server


def _seed(url: str, reports: Path) -> None:
    """The two providers (same uuids in every database), reachable, reading their nise folders."""
    migrate(url)
    now = utcnow()
    with get_engine(url).begin() as conn:
        conn.execute(
            sa.insert(customer).values(
                id=1, org_id="1234567", schema_name="org1234567", date_created=now, date_updated=now
            )
        )
        for n, uuid in enumerate(PROVIDERS, start=1):
            data_source = {"bucket": str(reports / uuid / "aws")}
            conn.execute(sa.insert(provider_authentication).values(id=n, credentials={}, fingerprint=f"auth-{n}"))
            fingerprint = hashlib.sha256(json.dumps(data_source).encode()).hexdigest()
            conn.execute(
                sa.insert(provider_billing_source).values(id=n, data_source=data_source, fingerprint=fingerprint)
            )
            conn.execute(
                sa.insert(provider).values(
                    uuid=uuid,
                    name=f"aws {n}",
                    type="AWS-local",
                    customer_id=1,
                    authentication_id=n,
                    billing_source_id=n,
                    created_timestamp=now,
                    reachable=True,
                )
            )


@dataclass
class World:
    """One deployment's settings: its application database and its place in the bucket."""

    name: str
    database_url: str
    dagster_pg_url: str
    env: dict[str, str]


def _world(name: str, pg: EmbeddedPostgres, seaweed: SeaweedS3, reports: Path, home: Path) -> World:
    database_url = pg.create_database(f"dask_{name}_app", replace=True)
    _seed(database_url, reports)
    env = {
        **seaweed.aws_env(),
        "KOKU_HOME": str(home),
        "KOKU_DATABASE_URL": database_url,
        "KOKU_OBJECT_STORE_URL": f"s3://{BUCKET}/{name}",
        "KOKU_LOCAL_BUCKET_ROOTS": str(reports),
    }
    return World(name, database_url, pg.create_database(f"dask_{name}_dagster", replace=True), env)


@contextmanager
def _settings(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's settings (read when the definitions load) and Dagster instance URL."""
    for key, value in {**world.env, "DAGSTER_PG_URL": world.dagster_pg_url}.items():
        monkeypatch.setenv(key, value)
    settings.get_settings.cache_clear()
    try:
        yield
    finally:
        settings.get_settings.cache_clear()


@contextmanager
def _instance(home: Path, extra: str = "") -> Iterator[dg.DagsterInstance]:
    write_instance(home, "postgres", NO_COMPUTE_LOGS + extra)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("providers", list(PROVIDERS))
        yield instance


def _keys() -> list[dg.MultiPartitionKey]:
    return [dg.MultiPartitionKey({"provider": u, "billing_month": m.isoformat()}) for u in PROVIDERS for m in _months()]


@dataclass
class Cluster:
    scheduler: str
    workers: list[subprocess.Popen[bytes]]


@contextmanager
def _dask_cluster(root: Path, world: World) -> Iterator[Cluster]:
    """``dask scheduler`` and two ``dask worker`` processes (no nanny: the worker is the process), each worker
    in its own folder with its own KOKU_HOME and DAGSTER_HOME."""
    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", LOOPBACK, "--port", str(port), "--dashboard-address", ":0", "--no-show"],
            cwd=root,
            env=base_env,
            stdout=subprocess.DEVNULL,
            stderr=(root / "scheduler.log").open("wb"),
        )
    ]
    workers = []
    for n in (1, 2):
        folder = root / f"worker-{n}"
        folder.mkdir()
        env = {
            **base_env,
            **world.env,
            "KOKU_HOME": str(folder / "koku"),
            "DAGSTER_HOME": str(folder / "dagster"),
            "DAGSTER_PG_URL": world.dagster_pg_url,
        }
        args = ["worker", address, "--no-nanny", "--nthreads", "1", "--local-directory", str(folder / "dask")]
        worker = subprocess.Popen(
            [dask, *args, "--dashboard-address", ":0", "--name", f"worker-{n}"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "worker.log").open("wb"),
        )
        workers.append(worker)
    procs += workers
    try:
        _wait_for_workers(address, len(workers), procs)
        yield Cluster(address, workers)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_workers(address: str, count: int, procs: list[subprocess.Popen[bytes]]) -> None:
    from dask.distributed import Client

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a Dask process ended at start"
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(count, timeout=60)
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the Dask cluster did not start")


def _store_files(seaweed: SeaweedS3, prefix: str) -> dict[str, bytes]:
    """Every object the pipeline wrote under ``prefix``, by key below it."""
    client = seaweed.client("s3")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k.removeprefix(f"{prefix}/"): client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _tables(files: dict[str, bytes], root: str) -> dict[str, pa.Table]:
    """The Parquet tables under ``root``, one per partition folder (however many files DuckDB's threads
    wrote), rows sorted by their columns, floating-point ones last."""
    by_folder: dict[str, list[pa.Table]] = {}
    for key, body in files.items():
        if key.startswith(root) and key.endswith(".parquet"):
            by_folder.setdefault(key.rsplit("/", 1)[0], []).append(pq.read_table(io.BytesIO(body)))
    tables = {}
    for folder, parts in by_folder.items():
        table = pa.concat_tables(parts)
        names = sorted(table.column_names, key=lambda n: pa.types.is_floating(table.schema.field(n).type))
        tables[folder] = table.sort_by([(n, "ascending") for n in names])
    return tables


def _differences(mine: pa.Table, theirs: pa.Table) -> dict[str, Any]:
    """The columns that differ, with their first differing pair. Floating-point sums may differ in their last
    bits (DuckDB adds in the order its threads meet the rows, in one process as well): those compare to 1e-9."""
    if mine.schema != theirs.schema or mine.num_rows != theirs.num_rows:
        return {"schema": (str(mine.schema), str(theirs.schema)), "rows": (mine.num_rows, theirs.num_rows)}
    found = {}
    for name in mine.column_names:
        close = pa.types.is_floating(mine.schema.field(name).type)
        pairs = zip(mine[name].to_pylist(), theirs[name].to_pylist())
        first = next(((a, b) for a, b in pairs if not _same(a, b, close)), None)
        if first is not None:
            found[name] = first
    return found


def _same(a: Any, b: Any, close: bool) -> bool:
    if close and a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _manifests(url: str) -> list[tuple[Any, ...]]:
    """The manifests and their files' states, without ids and times."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.select(
                manifest.c.provider_id,
                manifest.c.assembly_id,
                manifest.c.billing_period_start_datetime,
                manifest.c.num_total_files,
                manifest.c.completed_datetime.is_not(None),
                report_status_table.c.report_name,
                report_status_table.c.status,
                report_status_table.c.etag,
            )
            .join(report_status_table, report_status_table.c.manifest_id == manifest.c.id)
            .order_by(
                manifest.c.provider_id, manifest.c.billing_period_start_datetime, report_status_table.c.report_name
            )
        ).all()
    return [tuple(r) for r in rows]


def _single_process(world: World, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _settings(world, monkeypatch), _instance(home / "dagster") as instance:
        from koku_dagster.definitions import defs

        job = defs().resolve_job_def(provider_month_ingest.name)
        for key in _keys():
            assert job.execute_in_process(instance=instance, partition_key=key).success, key


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The errors of a failed run, for the assertion message."""
    return [
        f"{e.step_key}: {e.message} {e.error_info.to_string() if e.error_info else ''}"
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_failure or e.error_info is not None
    ]


def _backfill(instance: dg.DagsterInstance, run_config: dict[str, Any]) -> PartitionBackfill:
    """Backfill every provider month from this module's code location (the ingest assets on Dask)."""
    code = (__name__, "dask_definitions", "koku_dagster_dask")
    return run_backfill(instance, _keys(), run_config, code=code, backfill_id=BACKFILL)


def _on_dask(world: World, home: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[int | None]]:
    """Backfill every provider month with the steps on the cluster; return the pids that ran each run's steps."""
    config = {"execution": {"config": {"cluster": {"existing": {"address": cluster.scheduler}}}}}
    with _settings(world, monkeypatch), _instance(home / "dagster", IN_PROCESS_LAUNCH) as instance:
        backfill = _backfill(instance, config)
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": BACKFILL}))
        failures = {r.tags.get("dagster/partition"): _failures(instance, r.run_id) for r in runs if not r.is_success}
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS and not failures, (backfill.status, failures)
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(str(k) for k in _keys())
        assert instance.get_materialized_partitions(daily_summary.key) == {str(k) for k in _keys()}
        pids: dict[str, set[int | None]] = {}
        for run in runs:
            steps = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
            pids[run.tags["dagster/partition"]] = {e.dagster_event.pid for e in steps if e.dagster_event is not None}
    return pids


def test_dask_cluster_gives_the_summaries_of_a_single_process(
    pg_server: EmbeddedPostgres,
    seaweed: SeaweedS3,
    reports: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    records_opaque_to_dask: None,
) -> None:
    started = time.monotonic()
    single = _world("single", pg_server, seaweed, reports, tmp_path / "single" / "koku")
    _single_process(single, tmp_path / "single", monkeypatch)
    single_seconds = time.monotonic() - started
    spread = _world("spread", pg_server, seaweed, reports, tmp_path / "orchestrator" / "koku")
    with _dask_cluster(tmp_path, spread) as cluster:
        started = time.monotonic()
        pids = _on_dask(spread, tmp_path / "orchestrator", cluster, monkeypatch)
        dask_seconds = time.monotonic() - started
        worker_pids = {w.pid for w in cluster.workers}
    print(f"4 provider months: single process {single_seconds:.1f}s, Dask {dask_seconds:.1f}s; steps by pid {pids}")
    assert set().union(*pids.values()) == worker_pids  # every step ran on a worker, and both workers ran steps
    assert any(len(p) > 1 for p in pids.values()), "no run had its steps on both workers"
    assert not (tmp_path / "orchestrator" / "koku" / "object-cache").exists()  # the orchestrator wrote nothing

    expected, found = _store_files(seaweed, "single"), _store_files(seaweed, "spread")
    # The same partitions (nothing missing, stale or left over), the same archived reports, the same rows.
    assert {k.rsplit("/", 1)[0] for k in found} == {k.rsplit("/", 1)[0] for k in expected}
    assert {k: v for k, v in found.items() if "/csv/" in k} == {k: v for k, v in expected.items() if "/csv/" in k}
    for root in ("data/summary/", "data/focus/", "data/parquet/"):
        mine, theirs = _tables(found, root), _tables(expected, root)
        assert len(mine) >= len(PROVIDERS) * len(_months())
        for folder, table in theirs.items():
            assert not _differences(mine[folder], table), (folder, _differences(mine[folder], table))
    assert _manifests(spread.database_url) == _manifests(single.database_url)
    assert len({m[1] for m in _manifests(single.database_url)}) == len(PROVIDERS) * len(_months())
    for world in (single, spread):
        dispose_engine(world.database_url)
