"""The Kafka broker stopped and restarted (data kept) during a burst of sources events and payload
announcements, then a full replay of both topics from offset 0.

Tansu keeps its topics, messages and committed offsets in SeaweedFS here, so a restart is what a
Kafka broker restart is: the same data on the same address. The sensors' core paths run as the
daemon would run them (``SourcesSync.run_once``, ``ocp_upload_sensor`` and the runs it asks for).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from koku_dagster.assets.ingest import daily_line_items, daily_summary
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.reports.paths import ocp_line_items_dir
from koku_dagster.sources.sync import SOURCES_GROUP, SourcesSync, waiting_counts
from koku_dagster.uploads.intake import UPLOAD_GROUP
from koku_devtools.payloads import build_payload
from koku_devtools.services import SeaweedS3, TansuBroker
from koku_devtools.uploads import announcement_body
from tests.fault_jobs import no_duplicates, store_files, table_rows
from tests.test_ocp_uploads import MONTH, ORG, SCHEMA, World, _raw_pod_cpu_seconds
from tests.test_ocp_uploads import nise_ocp as nise_ocp  # fixtures
from tests.test_ocp_uploads import world as world
from tests.test_sources_faults import FAST

ARN = "arn:aws:iam::111111111111:role/CostManagement"


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """Tansu with its data in SeaweedFS (kept across a restart), instead of the session's in-memory one."""
    root = tmp_path_factory.mktemp("kafka-on-s3")
    with (
        SeaweedS3(workdir=root / "seaweed", buckets=("tansu",)) as store,
        TansuBroker.on_seaweed(store, "tansu", root / "tansu") as broker,
    ):
        yield broker


@dataclass
class Daemon:
    """What the daemon does: sources passes, upload ticks, and each run asked for, once per run key."""

    world: World
    sync: SourcesSync
    done: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    passes: int = 0

    def round(self) -> bool:
        """One round; whether anything was read, applied or run."""
        busy = False
        try:  # each pass is 10 minutes later, so back-offs have passed
            report = self.sync.run_once(now=utcnow() + timedelta(minutes=10 * self.passes))
            busy = bool(report.batch.read or report.operations or report.statuses.sent or report.batch.unparked)
            busy |= not (report.kafka_available and report.api_available)
        except Exception as exc:  # the broker died under the pass: the next pass takes over
            self.errors.append(type(exc).__name__)
            busy = True
        self.passes += 1
        result = self.world.tick()
        for request in result.run_requests:
            if request.run_key in self.done:
                continue
            self._run(request)
            busy = True
        return busy or bool(result.run_requests)

    def _run(self, request: dg.RunRequest) -> None:
        if request.job_name == "ocp_payload_ingest":
            ok = self.world.run(request).success
        else:
            ok = dg.materialize(
                [daily_line_items, daily_summary],
                partition_key=request.partition_key,
                resources=self.world.resources(),
                instance=self.world.instance,
                raise_on_error=False,
            ).success
        if ok:
            assert request.run_key is not None
            self.done.add(request.run_key)
        else:
            self.errors.append(f"run {request.run_key} failed")

    def settle(self, seconds: float = 90.0) -> None:
        """Rounds until one does nothing and nothing waits."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not self.round() and not any(waiting_counts(self.sync.engine).values()):
                return
        raise AssertionError(f"still busy after {seconds} s: {waiting_counts(self.sync.engine)}")


def _burst(world: World, tar: Path, sources: int, payloads: int) -> list[int]:
    """Sources created (one paused) and payloads announced; the source ids."""
    ids = []
    for i in range(sources):
        bucket = world.h.buckets / f"b{i}"
        bucket.mkdir()
        made = world.h.admin.create_cost_source("aws-local", f"AWS {i}", bucket=str(bucket), role_arn=f"{ARN}{i}")
        ids.append(int(made["source"]["id"]))
    world.h.admin.pause_source(ids[0])
    bodies = [announcement_body(tar.as_uri(), request_id=f"req-{i}", org_id=ORG) for i in range(payloads)]
    world.announce(*bodies)
    return ids


def _outage_during_burst(daemon: Daemon, broker: TansuBroker, down_seconds: float, providers: int) -> float:
    """The daemon works in a thread; the broker dies 0.3 s into it, before the burst's ``providers``
    exist. Seconds from restart to settled."""
    failures: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                daemon.round()
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    broker.stop()
    assert len(table_rows(daemon.sync.engine)["api_provider"]) < providers, "the burst was over before the fault"
    time.sleep(down_seconds)
    broker.start()
    restarted = time.monotonic()
    stop.set()
    thread.join(120)
    assert not failures, failures
    daemon.settle()
    return time.monotonic() - restarted


def _line_item_rows(world: World) -> int:
    pods = ocp_line_items_dir(world.h.store.local_root, SCHEMA, "pod_usage", world.provider_uuid, MONTH)
    files = sorted(str(p) for p in pods.glob("*.parquet"))
    return int(duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0])


def _summary_cpu_hours(world: World) -> Decimal:
    root = world.h.store.local_root / "data/summary/reporting_ocpusagelineitem_daily_summary"
    files = sorted(str(p) for p in (root / f"source={world.provider_uuid}" / "year=2026/month=10").glob("*.parquet"))
    got = duckdb.connect().execute("SELECT sum(pod_usage_cpu_core_hours) FROM read_parquet(?)", [files]).fetchone()
    return Decimal(str(got[0]))


def _raw_pod_rows(folder: Path) -> int:
    """Rows of the payload's pod usage reports (the files with pod CPU usage)."""
    rows = 0
    for path in folder.glob("*.csv"):
        lines = path.read_text().splitlines()
        if "pod_usage_cpu_core_seconds" in lines[0]:
            rows += len(lines) - 1
    assert rows > 0
    return rows


def _check_everything(world: World, ids: list[int], payloads: int, nise_ocp: Path) -> None:
    rows = table_rows(world.h.engine)
    no_duplicates(world.h.engine)
    assert {r["source_id"] for r in rows["api_sources"]} >= set(ids) and all(
        r["koku_uuid"] for r in rows["api_sources"]
    )
    assert len(rows["api_provider"]) == len(ids) + 1  # and the OpenShift one
    assert [r["source_id"] for r in rows["api_sources"] if r["paused"]] == [ids[0]]
    uploads = rows["ocp_payload_upload"]
    assert [(u["request_id"], u["state"], u["validation_sent"]) for u in uploads] == [
        (f"req-{i}", "success", True) for i in range(payloads)
    ]
    (manifest,) = rows["reporting_common_costusagereportmanifest"]  # the same payload: one manifest
    assert {u["manifest_uuid"] for u in uploads} == {manifest["assembly_id"]}
    assert rows["sources_parked_message"] == [] and rows["sources_rejected_message"] == []
    assert not any(".staging-" in f or ".retired-" in f for f in store_files(world.h.store.local_root))
    assert _line_item_rows(world) == _raw_pod_rows(nise_ocp)  # every line item once
    assert abs(_summary_cpu_hours(world) - _raw_pod_cpu_seconds(nise_ocp) / 3600) < Decimal("0.000001")
    with BatchConsumer(world.h.broker.bootstrap, world.h.topic, SOURCES_GROUP) as consumer:
        assert consumer.committed([0]) == {0: len(world.h.standin.events)}


def _replay_changes_nothing(world: World, daemon: Daemon) -> None:
    """Both topics consumed again from offset 0: the same tables and files, no run asked for."""
    tables, files = table_rows(world.h.engine), store_files(world.h.store.local_root)
    for topic, group in ((world.h.topic, SOURCES_GROUP), (world.upload_topic, UPLOAD_GROUP)):
        with BatchConsumer(world.h.broker.bootstrap, topic, group) as consumer:
            consumer.commit({0: 0})
    ran = set(daemon.done)
    daemon.settle()
    assert daemon.done == ran
    assert table_rows(world.h.engine) == tables and store_files(world.h.store.local_root) == files


@pytest.mark.parametrize(
    "down_seconds", [pytest.param(3.0, id="3s"), pytest.param(60.0, id="60s", marks=pytest.mark.slow)]
)
def test_broker_restart_during_a_burst_loses_and_repeats_nothing(
    world: World,
    kafka_broker: TansuBroker,
    nise_ocp: Path,
    tmp_path: Path,
    down_seconds: float,
) -> None:
    tar = build_payload(nise_ocp, world.h.buckets / "payload.tar.gz")
    ids = _burst(world, tar, sources=8, payloads=2)
    world.h.standin.latency_ms = 100  # passes last long enough for the broker to die under one
    daemon = Daemon(world, world.h.sync(**FAST))
    recovered = _outage_during_burst(daemon, kafka_broker, down_seconds, len(ids) + 1)
    world.h.standin.latency_ms = 0
    _check_everything(world, ids, 2, nise_ocp)
    t0 = time.monotonic()
    _replay_changes_nothing(world, daemon)
    print(
        f"broker down {down_seconds:.0f}s: settled {recovered:.1f}s after restart; errors {daemon.errors}; "
        f"replay {time.monotonic() - t0:.1f}s"
    )
