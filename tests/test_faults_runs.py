"""PostgreSQL (the application database) and the object store (SeaweedFS) going away while work is in
flight: a sources pass, a provider-month ingestion run writing to ``s3://``, and a deletion.

Each server is this module's own, so that stopping it disturbs no other test; each comes back on the
same address with its data. A run the fault broke fails; the run again completes; nothing is
duplicated and nothing is left waiting.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from koku_dagster.assets.ingest import INGEST_ASSETS, ManifestConfig
from koku_dagster.infra.db.engine import dispose_engine
from koku_dagster.infra.db.migrate import migrate
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.ingest import workflow
from koku_dagster.resources import ApplicationDatabase
from koku_dagster.sources.sync import waiting_counts
from koku_devtools.nise_reports import generate
from koku_devtools.services import EmbeddedPostgres, SeaweedS3
from koku_devtools.services.processes import Service
from tests.conftest import Harness
from tests.fault_jobs import no_duplicates, table_rows
from tests.resources import cloud_apis_resource, ingestion_resource, object_store_resource
from tests.test_ingest_assets import _passed_check, _raw_cost
from tests.test_sources_faults import FAST, _aws, _row, _sid, _until_quiet

MONTH = date(2026, 10, 1)
BUCKET = "koku"


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg-faults") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(workdir=tmp_path_factory.mktemp("seaweed-faults"), buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture
def db_url(own_pg: EmbeddedPostgres, tmp_path: Path) -> Iterator[str]:
    """The application database on this module's PostgreSQL (a server outage needs a server)."""
    url = own_pg.create_database(f"faults_{abs(hash(tmp_path.name)) % 10**8}", replace=True)
    migrate(url)
    yield url
    dispose_engine(url)


@pytest.fixture(scope="module")
def nise_aws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("nise-faults"), MONTH, date(2026, 10, 3), kinds=("aws",))["aws"]


def _down_for(service: Service, seconds: float) -> threading.Thread:
    """Stop ``service`` now and start it again (same address, data kept) ``seconds`` later, in a thread."""
    service.stop()
    thread = threading.Timer(seconds, service.start)
    thread.start()
    return thread


def _outage_inside_line_items(monkeypatch: pytest.MonkeyPatch, service: Service, seconds: float) -> list[float]:
    """The server goes away when the first run reaches its ``line_items`` step; the time it did."""
    real = workflow.convert_line_items
    hit: list[float] = []

    def with_outage(*args: Any, **kwargs: Any) -> Any:
        if not hit:
            hit.append(time.monotonic())
            _down_for(service, seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "convert_line_items", with_outage)
    return hit


def _source_with_reports(harness: Harness, nise_aws: Path) -> str:
    bucket = harness.buckets / "aws"
    shutil.copytree(nise_aws, bucket)
    harness.admin.create_cost_source("aws-local", "AWS", bucket=str(bucket))
    harness.settle()
    _passed_check(harness)
    uuid = harness.table("api_sources", "source_id")[-1]["koku_uuid"]
    assert uuid
    return uuid


def _ingest(
    harness: Harness, instance: dg.DagsterInstance, uuid: str, store: dict[str, Any], force: bool = False
) -> dg.ExecuteInJobResult:
    resources = {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "object_store": object_store_resource(local_bucket_roots=str(harness.buckets), **store),
        "ingestion": ingestion_resource(str(harness.store.local_root)),
        "cloud_apis": cloud_apis_resource(),
    }
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=dg.MultiPartitionKey({"provider": uuid, "billing_month": MONTH.isoformat()}),
        resources=resources,
        instance=instance,
        run_config=dg.RunConfig(ops={"report_manifest": ManifestConfig(force=force)}),
        raise_on_error=False,
    )


def _until_done(run: Callable[[], dg.ExecuteInJobResult], seconds: float) -> tuple[int, dg.ExecuteInJobResult]:
    """Runs again (as the run's retry or the next poll would) until one succeeds: (failed runs, the good one)."""
    end, failed = time.monotonic() + seconds, 0
    while True:
        result = run()
        if result.success or time.monotonic() > end:
            return failed, result
        failed += 1
        time.sleep(1.0)


def _month_complete(harness: Harness, result: dg.ExecuteInJobResult, bucket: Path) -> None:
    """One manifest, every file done once, all checks passed, the line items exactly the raw rows."""
    no_duplicates(harness.engine)
    rows = table_rows(harness.engine)
    (manifest,) = rows["reporting_common_costusagereportmanifest"]
    assert manifest["completed_datetime"] is not None
    statuses = rows["reporting_common_costusagereportstatus"]
    assert statuses and all(s["status"] == 1 and s["completed_datetime"] for s in statuses)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    materialized = result.asset_materializations_for_node("line_items")
    assert materialized and materialized[0].metadata["dagster/row_count"].value == _raw_cost(bucket)[1]


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_restart_during_a_sources_pass(harness: Harness, own_pg: EmbeddedPostgres) -> None:
    created = [_aws(harness, f"Tenant {i}") for i in range(6)]
    harness.standin.latency_ms = 100  # the pass is still applying when the database goes away
    sync = harness.sync(**FAST)
    errors: list[str] = []

    def tick() -> None:
        try:
            sync.run_once()
        except Exception as exc:  # the database went away under the pass
            errors.append(type(exc).__name__)

    thread = threading.Thread(target=tick)
    thread.start()
    time.sleep(0.5)
    restarted = _down_for(own_pg, 2.0)
    thread.join(60)
    restarted.join()
    t0 = time.monotonic()
    harness.standin.latency_ms = 0
    _until_quiet(sync)
    print(f"postgres restart during a pass: errors {errors}; settled {time.monotonic() - t0:.1f}s after restart")
    no_duplicates(harness.engine)
    assert all(_row(harness, _sid(c))["koku_uuid"] for c in created)
    assert len(harness.table("api_provider", "uuid")) == len(created)
    assert not any(waiting_counts(harness.engine).values())
    assert harness.table("sources_rejected_message", "id") == []


def test_postgres_restart_during_an_ingestion_run(
    harness: Harness, own_pg: EmbeddedPostgres, nise_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = _source_with_reports(harness, nise_aws)
    hit = _outage_inside_line_items(monkeypatch, own_pg, 2.0)
    store = {"url": harness.store.url}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        failed, result = _until_done(lambda: _ingest(harness, instance, uuid, store), 60)
        recovered = time.monotonic() - hit[0]
        again = _ingest(harness, instance, uuid, store)  # the month is done: a further run changes nothing
    print(f"postgres restart during a run: {failed} failed run(s), done {recovered:.1f}s after the fault")
    assert hit and failed >= 1
    _month_complete(harness, result, harness.buckets / "aws")
    assert again.success and not again.asset_materializations_for_node("line_items")


# --------------------------------------------------------------------------- object store


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    for key, value in seaweed.aws_env().items():
        monkeypatch.setenv(key, value)
    return seaweed


def _keys(seaweed: SeaweedS3, prefix: str) -> list[str]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.mark.parametrize("down", [pytest.param(4.0, id="4s"), pytest.param(120.0, id="2min", marks=pytest.mark.slow)])
def test_object_store_down_during_an_ingestion_run(
    harness: Harness, s3_env: SeaweedS3, nise_aws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, down: float
) -> None:
    uuid = _source_with_reports(harness, nise_aws)
    prefix = f"run-{tmp_path.name}"
    store = {"url": f"s3://{BUCKET}/{prefix}", "endpoint_url": s3_env.endpoint_url, "cache_dir": str(tmp_path / "c")}
    hit = _outage_inside_line_items(monkeypatch, s3_env, down)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        failed, result = _until_done(lambda: _ingest(harness, instance, uuid, store), down + 90)
        recovered = time.monotonic() - hit[0] - down
        stored = _keys(s3_env, prefix)
        forced = _ingest(harness, instance, uuid, store, force=True)  # the hook fires once only
    print(f"object store down {down:.0f}s during a run: {failed} failed run(s), done {recovered:.1f}s after restart")
    assert hit
    _month_complete(harness, result, harness.buckets / "aws")
    assert not any(".staging-" in k or ".retired-" in k for k in stored)
    assert any(f"source={uuid}/" in k and "/summary/" in k for k in stored)
    assert forced.success and _keys(s3_env, prefix) == stored  # a clean run writes exactly what is there


@pytest.mark.parametrize("down", [pytest.param(4.0, id="4s"), pytest.param(120.0, id="2min", marks=pytest.mark.slow)])
def test_object_store_down_during_a_deletion(harness: Harness, s3_env: SeaweedS3, tmp_path: Path, down: float) -> None:
    prefix = f"del-{tmp_path.name}"
    harness.store = ObjectStore(f"s3://{BUCKET}/{prefix}", s3_env.endpoint_url, tmp_path / "cache")
    doomed, kept = _aws(harness, "Doomed"), _aws(harness, "Kept")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    uuids = {_row(harness, _sid(c))["koku_uuid"] for c in (doomed, kept)}
    client = s3_env.client()
    for uuid in uuids:
        for n in range(3):
            key = f"{prefix}/data/csv/org1234567/AWS/source={uuid}/year=2026/month=10/f{n}.csv"
            client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    doomed_uuid = _row(harness, _sid(doomed))["koku_uuid"]
    harness.admin.delete_source(_sid(doomed))
    s3_env.stop()
    end = time.monotonic() + down
    while time.monotonic() < end:  # the sensor keeps ticking: the deletion waits, visibly
        sync.run_once()
        assert waiting_counts(harness.engine)["deletions"] == 1 and _row(harness, _sid(doomed))
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    s3_env.start()
    t0 = time.monotonic()
    _until_quiet(sync, 60)
    print(f"object store down {down:.0f}s during a deletion: deleted {time.monotonic() - t0:.1f}s after restart")
    assert _row(harness, _sid(doomed)) is None and _row(harness, _sid(kept))["koku_uuid"]
    assert doomed_uuid not in {p["uuid"] for p in harness.table("api_provider", "uuid")}
    remaining = _keys(s3_env, prefix)
    assert not any(doomed_uuid in k for k in remaining) and len(remaining) == 3  # the kept provider's files
