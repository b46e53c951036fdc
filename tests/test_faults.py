"""Faults while work is in flight: what survives, what recovers, and how fast.

Each case breaks a real process and asserts exactly what is left afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.schema import customer, ocp_payload_upload, provider
from koku_dagster.infra.db.types import utcnow
from koku_dagster.sensors import dead_runs as dead_runs_module
from koku_dagster.sensors import ocp_upload
from koku_dagster.sensors.dead_runs import dead_run_sensor, dead_runs
from koku_dagster.uploads import upload_records
from tests.conftest import Harness
from tests.fault_jobs import ingest_definitions
from tests.test_faults_runs import _month_complete, _source_with_reports
from tests.test_faults_runs import nise_aws as nise_aws  # the fixture

REPO = Path(__file__).resolve().parents[1]
OCP_UUID = "33333333-3333-4333-8333-333333333333"
REQUEST_ID = "req-killed"


def _start_busy_run(dagster_home: Path, fault_home: Path) -> subprocess.Popen[bytes]:
    """A run of ``busy_payload_job`` in its own process (``dagster job execute``), once it holds the lock."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FAULT_HOME": str(fault_home)}
    tags = json.dumps({"koku/request_id": REQUEST_ID, "koku/ocp_line_items": "writer-or-reader"})
    cmd = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(REPO / "tests/fault_jobs.py")]
    proc = subprocess.Popen([*cmd, "-j", "busy_payload_job", "--tags", tags], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while not (fault_home / "locked").exists():
        assert proc.poll() is None, "the run ended before it took the lock"
        assert time.monotonic() < deadline, "the run did not start in time"
        time.sleep(0.1)
    return proc


def _seed(db_url: str) -> sa.Engine:
    """An OpenShift provider, and an upload whose run was handed over two minutes ago."""
    engine = get_engine(db_url)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(customer).values(id=1, org_id="1", schema_name="org1", date_created=now, date_updated=now)
        )
        conn.execute(
            sa.insert(provider).values(uuid=OCP_UUID, name="ocp", type="OCP", customer_id=1, created_timestamp=now)
        )
        conn.execute(
            sa.insert(ocp_payload_upload).values(
                request_id=REQUEST_ID,
                org_id="1",
                url="http://payloads.invalid/p.tar.gz",
                topic="platform.upload.announce",
                partition=0,
                offset=0,
                state=upload_records.PENDING,
                received_at=now - timedelta(minutes=2),
                run_requested=True,
            )
        )
    return engine


def _summary_by_hand(db_url: str, home: Path, instance: dg.DagsterInstance, finished: list[float]) -> None:
    """``daily_summary`` of the OpenShift month, materialized as from the UI (no tags)."""
    from koku_dagster.assets.ingest import daily_summary
    from koku_dagster.resources import ApplicationDatabase
    from tests.resources import cloud_apis_resource, ingestion_resource, object_store_resource

    resources = {
        "app_db": ApplicationDatabase(database_url=db_url),
        "object_store": object_store_resource(f"file://{home / 'store'}", str(home / "buckets")),
        "ingestion": ingestion_resource(str(home)),
        "cloud_apis": cloud_apis_resource(),
    }
    key = dg.MultiPartitionKey({"provider": OCP_UUID, "billing_month": utcnow().date().replace(day=1).isoformat()})
    instance.add_dynamic_partitions("providers", [OCP_UUID])
    dg.materialize([daily_summary], partition_key=key, resources=resources, instance=instance, raise_on_error=False)
    finished.append(time.monotonic())


def test_kill_9_of_a_payload_run_frees_the_queue(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload run killed while it holds the line items: a hand-made OpenShift summary waits for it,
    the run is failed within one sensor tick, the upload is asked for again, the queue moves."""
    dagster_home, home = tmp_path / "dagster", tmp_path / "home"
    dagster_home.mkdir()
    monkeypatch.setattr(dead_runs_module, "GRACE_SECONDS", 0.0)  # the run is seconds old
    engine = _seed(db_url)
    proc = _start_busy_run(dagster_home, home)
    try:
        _kill_and_recover(proc, dagster_home, db_url, home, engine)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    upload = upload_records.load_upload(engine, REQUEST_ID)
    assert upload is not None and upload.state == upload_records.PENDING  # retried, not lost


def _kill_and_recover(
    proc: subprocess.Popen[bytes], dagster_home: Path, db_url: str, home: Path, engine: sa.Engine
) -> None:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        finished: list[float] = []
        summary = threading.Thread(target=_summary_by_hand, args=(db_url, home, instance, finished))
        summary.start()
        time.sleep(2)
        assert not finished, "the OpenShift summary did not wait for the payload run"
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        summary.join(60)
        assert finished and finished[0] >= killed  # the kernel released the lock with the process
        (run,) = instance.get_runs(dg.RunsFilter(tags={"koku/request_id": REQUEST_ID}))
        assert run.status == dg.DagsterRunStatus.STARTED  # nothing told Dagster
        assert [r.run_id for r in dead_runs(instance)] == [run.run_id]
        dead_run_sensor(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        recovered = time.monotonic() - killed
        again = ocp_upload._stalled_requests(dg.build_sensor_context(instance=instance), engine, time.monotonic() + 10)
        assert [r.run_key for r in again] == [f"ocp-payload:{REQUEST_ID}:1"]
    print(f"kill -9 of a payload run: recovered in {recovered:.1f}s")


def _run_env(harness: Harness) -> dict[str, str]:
    """Where the run in ``tests/fault_jobs.py`` finds the harness's database, store and buckets."""
    return {
        "FAULT_HOME": str(harness.store.local_root),
        "FAULT_DB_URL": harness.url,
        "FAULT_BUCKETS": str(harness.buckets),
    }


def _start_ingest_run(dagster_home: Path, harness: Harness, partition: str) -> subprocess.Popen[bytes]:
    """A real ``provider_month_ingest`` run in its own process (``dagster job execute``)."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), **_run_env(harness)}
    month, uuid = partition.split("|")
    tags = json.dumps(  # as Dagster tags a run of a multi-partition key
        {
            "dagster/partition": partition,
            "dagster/partition/billing_month": month,
            "dagster/partition/provider": uuid,
            "koku/provider": uuid,
        }
    )
    cmd = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(REPO / "tests/fault_jobs.py")]
    return subprocess.Popen([*cmd, "-j", "provider_month_ingest", "--tags", tags], env=env, cwd=REPO)


def _step_started(instance: dg.DagsterInstance, step: str) -> str | None:
    """The id of the run that has started ``step``, if any."""
    for run in instance.get_runs():
        events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
        if any(e.event_log_entry.step_key == step for e in events):
            return run.run_id
    return None


def test_kill_9_of_an_ingestion_run_is_failed_revived_and_completes(
    harness: Harness, nise_aws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider-month run killed in its ``line_items`` step: failed on the next ``dead_run_sensor``
    tick, asked for once more, and that run completes the month exactly once."""
    monkeypatch.setattr(dead_runs_module, "GRACE_SECONDS", 0.0)
    uuid = _source_with_reports(harness, nise_aws)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    partition = f"2026-10-01|{uuid}"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("providers", [uuid])
    proc = _start_ingest_run(dagster_home, harness, partition)
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            deadline = time.monotonic() + 90
            while (run_id := _step_started(instance, "line_items")) is None:
                assert proc.poll() is None and time.monotonic() < deadline, "the run never reached line_items"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
            result = dead_run_sensor(dg.build_sensor_context(instance=instance))
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            (again,) = result.run_requests
            assert again.run_key == f"revive:{run_id}" and again.partition_key == partition
            for key in ("FAULT_HOME", "FAULT_DB_URL", "FAULT_BUCKETS"):
                monkeypatch.setenv(key, _run_env(harness)[key])
            job = ingest_definitions().resolve_job_def("provider_month_ingest")
            revived = job.execute_in_process(
                partition_key=again.partition_key, tags=again.tags, instance=instance, raise_on_error=False
            )
            recovered = time.monotonic() - killed
            assert not dead_runs(instance)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"kill -9 of an ingestion run: revived and complete {recovered:.1f}s after the kill")
    assert revived.success
    _month_complete(harness, revived, harness.buckets / "aws")
