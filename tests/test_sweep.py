"""Crash leftovers: which are swept, which are kept (age, runs in progress, deleted providers)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from koku_dagster.ingest.sweep import RunsInProgress, provider_of, sweep_leftovers

LIVE = "11111111-1111-4111-8111-111111111111"
GONE = "22222222-2222-4222-8222-222222222222"
HOUR = timedelta(hours=1)


def _make(path: Path, age: timedelta) -> Path:
    path.mkdir(parents=True)
    (path / "part.parquet").write_bytes(b"x" * 10)
    stamp = time.time() - age.total_seconds()
    for p in (path / "part.parquet", path):
        os.utime(p, (stamp, stamp))
    return path


def _month(root: Path, uuid: str) -> Path:
    return root / "data/parquet/org1/AWS" / f"source={uuid}" / "year=2026"


def test_sweep_removes_old_and_orphaned_leftovers_only(tmp_path: Path) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    old_staging = _make(_month(store, LIVE) / ".staging-month=11-abc", 5 * HOUR)
    old_retired = _make(_month(store, LIVE) / ".retired-month=10-abc", 5 * HOUR)
    young_staging = _make(_month(store, LIVE) / ".staging-month=12-def", HOUR / 2)
    orphan_young = _make(_month(store, GONE) / ".staging-month=11-ghi", HOUR / 2)
    incoming = _make(store / ".ocp-incoming-x1", 5 * HOUR)
    payload = _make(work / "ocp-payload-y2", 5 * HOUR)
    young_payload = _make(work / "ocp-payload-z3", HOUR / 2)
    partition = _make(_month(store, LIVE) / "month=11", 5 * HOUR)  # real data: never touched
    assert provider_of(old_staging) == LIVE

    report = sweep_leftovers(
        [store, work],
        now=datetime.now(UTC),
        max_age=4 * HOUR,
        existing_providers=lambda uuids: uuids & {LIVE},
    )
    assert sorted(report.removed) == sorted([old_staging, old_retired, orphan_young, incoming, payload])
    assert not any(p.exists() for p in report.removed)
    assert young_staging.exists() and young_payload.exists() and partition.exists()
    assert report.kept_young == 2 and report.failed == 0
    assert report.bytes_freed >= 50


def test_sweep_keeps_what_a_run_in_progress_may_own(tmp_path: Path) -> None:
    store = tmp_path / "store"
    busy_provider = _make(_month(store, GONE) / ".staging-month=11-abc", 5 * HOUR)  # provider gone, run going
    after_start = _make(store / ".ocp-incoming-x1", 5 * HOUR)
    running = RunsInProgress(earliest_start=datetime.now(UTC) - 6 * HOUR, providers=frozenset({GONE}))
    report = sweep_leftovers([store], now=datetime.now(UTC), max_age=4 * HOUR, in_progress=running)
    assert report.removed == [] and report.kept_busy == 2
    assert busy_provider.exists() and after_start.exists()
    idle = sweep_leftovers([store], now=datetime.now(UTC), max_age=4 * HOUR)
    assert sorted(idle.removed) == sorted([busy_provider, after_start])


def test_leftovers_sweep_job_runs_against_the_database(db_url: str, tmp_path: Path) -> None:
    from koku_dagster.resources import ApplicationDatabase
    from koku_dagster.schedules.leftovers import leftovers_sweep
    from tests.resources import ingestion_resource, object_store_resource

    store = tmp_path / "store"
    orphan = _make(_month(store, GONE) / ".retired-month=11-abc", HOUR / 2)
    young = _make(tmp_path / "home/work/ocp-payload-a", HOUR / 2)
    resources = {
        "app_db": ApplicationDatabase(database_url=db_url),
        "object_store": object_store_resource(f"file://{store}", str(tmp_path / "buckets")),
        "ingestion": ingestion_resource(str(tmp_path / "home")),
    }
    with dg.instance_for_test() as instance:
        result = leftovers_sweep.execute_in_process(resources=resources, instance=instance)
    assert result.success
    assert not orphan.exists() and young.exists()  # the deleted provider's leftover goes at any age
