"""The Dagster instance on PostgreSQL (dagster.yaml + deploy/dagster-postgres.yaml, DAGSTER_PG_URL): the
sources sensor, a provider-month run and a backfill with runs, event log and schedule storage on the
embedded PostgreSQL."""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from koku_dagster.assets.ingest import INGEST_ASSETS, daily_summary
from koku_dagster.infra import settings
from koku_dagster.ingest.reachability import check_providers
from koku_devtools.dagster_instance import write_instance
from koku_devtools.nise_reports import generate
from koku_devtools.services import EmbeddedPostgres
from tests.conftest import Harness
from tests.resources import cloud_apis_resource, object_store_resource
from tests.test_sensor import _tick

_counter = itertools.count()
#: Runs launched by the backfill execute in this process, one after another (the daemon's loop, without a daemon).
IN_PROCESS_LAUNCH = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
"""


@pytest.fixture
def pg_home(pg_server: EmbeddedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME whose instance uses a fresh database, named by DAGSTER_PG_URL."""
    monkeypatch.setenv("DAGSTER_PG_URL", pg_server.create_database(f"dagster_{next(_counter)}", replace=True))
    return tmp_path / "dagster_home"


@contextmanager
def _instance(home: Path, extra: str = "") -> Iterator[dg.DagsterInstance]:
    write_instance(home, "postgres", extra)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_instance_on_postgres_keeps_the_project_settings(pg_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _instance(pg_home) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4  # type: ignore[union-attr]
        assert instance.run_monitoring_enabled
        instance.add_dynamic_partitions("providers", ["00000000-0000-4000-8000-000000000001"])
    with _instance(pg_home) as again:  # a second process opening the instance sees the same state
        assert again.get_dynamic_partitions("providers") == ["00000000-0000-4000-8000-000000000001"]
    import os

    engine = sa.create_engine(os.environ["DAGSTER_PG_URL"], poolclass=sa.pool.NullPool)
    assert {"runs", "event_logs", "jobs", "dynamic_partitions"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
    monkeypatch.delenv("DAGSTER_PG_URL")
    with pytest.raises(Exception, match="DAGSTER_PG_URL"), _instance(pg_home):
        pass  # without the variable the instance does not open (no silent SQLite)


def test_sources_sensor_on_a_postgres_instance(harness: Harness, pg_home: Path) -> None:
    bucket = harness.buckets / "aws"
    bucket.mkdir()
    uid = "0b6c0f8e-2222-4e5e-9d9e-000000000001"
    harness.admin.create_cost_source("aws-local", "AWS", bucket=str(bucket), uid=uid)
    with _instance(pg_home) as instance:
        result = _tick(harness, instance)
        assert {e.asset_key.to_user_string() for e in result.asset_events} == {"source_records", "provider_records"}
    with _instance(pg_home) as again:  # the partition the tick added is in PostgreSQL
        assert again.get_dynamic_partitions("providers") == [uid]


@pytest.fixture
def two_month_reports(tmp_path: Path) -> Path:
    """AWS reports spanning the end of last month and the start of this one (both in the window)."""
    first = date.today().replace(day=1)
    return generate(tmp_path / "nise", first - timedelta(days=2), first + timedelta(days=1), kinds=("aws",))["aws"]


@contextmanager
def _code_location_env(harness: Harness, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The code location's settings pointing at the harness (read when it loads)."""
    monkeypatch.setenv("KOKU_HOME", str(home))
    monkeypatch.setenv("KOKU_DATABASE_URL", harness.url)
    monkeypatch.setenv("KOKU_OBJECT_STORE_URL", harness.store.url)
    monkeypatch.setenv("KOKU_LOCAL_BUCKET_ROOTS", str(harness.buckets))
    settings.get_settings.cache_clear()
    try:
        yield
    finally:
        settings.get_settings.cache_clear()


def run_backfill(
    instance: dg.DagsterInstance,
    keys: list[dg.MultiPartitionKey],
    run_config: dict[str, Any],
    *,
    code: tuple[str, str, str] = ("koku_dagster.definitions", "defs", "koku_dagster"),
    backfill_id: str = "pgbackfill",
) -> PartitionBackfill:
    """Submit a backfill of the ingest assets over ``keys`` from the code location ``code`` (module,
    attribute, location name) and run the backfill daemon's iterations until it is done."""
    module, attribute, location = code
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name=module, attribute=attribute), location_name=location
    )
    with create_test_daemon_workspace_context(InProcessTestWorkspaceLoadTarget(origin), instance) as workspace:
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=workspace.create_request_context().asset_graph,
            partition_names=[str(k) for k in keys],
            asset_selection=[a.key for a in INGEST_ASSETS],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=run_config,
        )
        instance.add_backfill(backfill)
        for _ in range(10):
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            done = instance.get_backfill(backfill_id)
            assert done is not None
            if done.status != BulkActionStatus.REQUESTED:
                return done
    raise AssertionError("the backfill did not finish")


def _backfill(instance: dg.DagsterInstance, keys: list[dg.MultiPartitionKey]) -> PartitionBackfill:
    """Rebuild ``keys`` (force: the month the single run ingested has no new manifest), steps in one process."""
    # Runs rebuild their job from the code location, cached per process: load it afresh with this test's settings.
    ReconstructableJob.get_repository_definition.cache_clear()
    ReconstructableJob.get_definition.cache_clear()
    config = {"ops": {"report_manifest": {"config": {"force": True}}}, "execution": {"config": {"in_process": {}}}}
    return run_backfill(instance, keys, config)


def test_provider_month_run_and_backfill_on_a_postgres_instance(
    harness: Harness, pg_home: Path, two_month_reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(two_month_reports, harness.buckets / "aws")
    harness.admin.create_cost_source("aws-local", "AWS", bucket=str(harness.buckets / "aws"))
    harness.settle()
    uuid = harness.table("api_sources", "source_id")[-1]["koku_uuid"]
    access = object_store_resource(url=harness.store.url, local_bucket_roots=str(harness.buckets)).report_access(
        cloud_apis_resource().endpoints()
    )
    (checked,) = check_providers(harness.engine, access, [uuid])  # nothing is ingested before a first check
    assert checked.reachable, checked
    this_month = date.today().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    keys = [dg.MultiPartitionKey({"provider": uuid, "billing_month": m.isoformat()}) for m in (last_month, this_month)]
    with _code_location_env(harness, tmp_path / "koku", monkeypatch), _instance(pg_home, IN_PROCESS_LAUNCH) as instance:
        from koku_dagster.definitions import defs

        instance.add_dynamic_partitions("providers", [uuid])
        job = defs().resolve_job_def("provider_month_ingest")
        single = job.execute_in_process(instance=instance, partition_key=keys[1])
        assert single.success
        backfill = _backfill(instance, keys)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": "pgbackfill"}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(str(k) for k in keys)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        summarized = instance.get_materialized_partitions(daily_summary.key)
        assert summarized == {str(k) for k in keys}
        # The single run and the backfill's run of this month each recorded a materialization.
        records = instance.fetch_materializations(daily_summary.key, limit=10).records
        assert sorted(str(r.partition_key) for r in records) == sorted([str(keys[0]), str(keys[1]), str(keys[1])])
    for month in (last_month, this_month):
        folder = f"source={uuid}/year={month:%Y}/month={month:%m}"
        found = list(
            harness.store.local_root.glob(
                f"data/summary/reporting_awscostentrylineitem_daily_summary/{folder}/*.parquet"
            )
        )
        assert found, folder
