"""Faults while sources work is in flight (Tansu, the stand-in made to fail, SQLite and PostgreSQL):
nothing is lost, duplicated or given up, other tenants do not wait, and the waiting work is visible.
Back-offs and deadlines are made small so that each case runs in seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import dagster as dg
import pytest

from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.sensors.platform_sources import platform_sources_sensor
from koku_dagster.sources.retry import Backoff
from koku_dagster.sources.sync import SourcesSync, waiting_counts
from koku_devtools.platform_sources.admin import StandInAdmin
from tests.conftest import Harness
from tests.test_sensor import _resources

ARN = "arn:aws:iam::111111111111:role/CostManagement"
FAST = {"message_backoff": Backoff(0.05, 0.2), "operation_backoff": Backoff(0.05, 0.2), "read_budget_seconds": 2.0}


def _aws(h: Harness, name: str, admin: StandInAdmin | None = None, **kw: Any) -> dict[str, Any]:
    bucket = h.buckets / name.replace(" ", "_")
    bucket.mkdir(exist_ok=True)
    return (admin or h.admin).create_cost_source("aws-local", name, bucket=str(bucket), role_arn=f"{ARN}{name}", **kw)


def _sid(created: dict[str, Any]) -> int:
    return int(created["source"]["id"])


def _row(h: Harness, source_id: int) -> dict[str, Any] | None:
    rows = [r for r in h.table("api_sources", "source_id") if r["source_id"] == source_id]
    return rows[0] if rows else None


def _until_quiet(sync: SourcesSync, seconds: float = 20.0) -> None:
    """Run passes (real time) until nothing waits and a pass does nothing."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        report = sync.run_once()
        idle = not (report.batch.read or report.batch.unparked or report.operations or report.statuses.sent)
        if idle and report.api_available and not any(waiting_counts(sync.engine).values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"work still waiting: {waiting_counts(sync.engine)}")


def _committed(h: Harness) -> int:
    with BatchConsumer(h.broker.bootstrap, h.topic, "hccm-sources") as consumer:
        return consumer.committed([0])[0]


def _provider_files(h: Harness, uuid: str) -> Any:
    folder = h.store.local_root / "data" / "csv" / "org1234567" / "AWS" / f"source={uuid}" / "year=2026" / "month=11"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.csv").write_text("x")
    return folder.parent.parent


@pytest.mark.parametrize("outage_seconds", [0, pytest.param(180, marks=pytest.mark.slow)])
def test_platform_sources_down_during_a_destroy_then_the_deletion_completes(
    harness: Harness, outage_seconds: float
) -> None:
    """Platform Sources answering 503 (five passes, or the issue's three minutes with a pass every 5 s):
    nothing is read or skipped meanwhile; the deletion completes once it answers again."""
    doomed, kept = _aws(harness, "Doomed"), _aws(harness, "Kept")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    uuid = _row(harness, _sid(doomed))["koku_uuid"]
    files = _provider_files(harness, uuid)
    harness.admin.delete_source(_sid(doomed))
    late = _aws(harness, "Late")  # created during the outage too
    harness.standin.inject_faults(status=503, count=10**7)
    end, passes = time.monotonic() + outage_seconds, 0
    while passes < 5 or time.monotonic() < end:
        report = sync.run_once()
        assert report.api_available is False and report.batch.read == 0  # nothing read, nothing skipped
        assert _row(harness, _sid(doomed))["koku_uuid"] == uuid and files.exists()
        passes += 1
        if time.monotonic() < end:
            time.sleep(5)
    harness.standin.clear_faults()
    back = time.monotonic()
    _until_quiet(sync)
    print(f"Platform Sources 503 for {outage_seconds} s: settled {time.monotonic() - back:.1f} s after it answered")
    assert _row(harness, _sid(doomed)) is None and not files.exists()
    assert uuid not in {p["uuid"] for p in harness.table("api_provider", "uuid")}
    assert _row(harness, _sid(kept))["koku_uuid"] and _row(harness, _sid(late))["koku_uuid"]
    assert harness.table("sources_rejected_message", "offset") == [] and not any(
        waiting_counts(harness.engine).values()
    )
    assert _committed(harness) == len(harness.standin.events)


def test_one_sources_calls_fail_it_is_parked_and_other_tenants_do_not_wait(harness: Harness) -> None:
    doomed = _aws(harness, "Doomed")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    flaky = _aws(harness, "Flaky", StandInAdmin(harness.standin.url, org_id="7777777", account=""))
    other = _aws(harness, "Other", StandInAdmin(harness.standin.url, org_id="8888888", account=""))
    harness.admin.delete_source(_sid(doomed))
    # Every call for the flaky source's tenant answers 503 for a while.
    harness.standin.inject_faults(status=503, count=40, org_id="7777777")
    report = sync.run_once()
    assert report.batch.parked >= 1 and report.batch.rejected == []
    assert _committed(harness) >= report.batch.read  # its offsets moved on all the same
    assert _row(harness, _sid(other))["koku_uuid"]  # another tenant in the same batch: applied
    assert _row(harness, _sid(doomed)) is None  # and the destroy went through
    assert waiting_counts(harness.engine)["events_parked"] >= 1
    harness.standin.clear_faults()
    _until_quiet(sync)
    assert _row(harness, _sid(flaky))["koku_uuid"]
    assert harness.table("sources_parked_message", "offset") == []
    assert harness.table("sources_rejected_message", "offset") == []


def test_object_store_failing_during_a_deletion_is_retried_until_it_works(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = _aws(harness, "Doomed")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    uuid = _row(harness, _sid(doomed))["koku_uuid"]
    files = _provider_files(harness, uuid)
    failures = {"left": 12}  # more than the attempts after which an operation is flagged as failing
    real = ObjectStore.delete_provider_data

    def down_for_a_while(self: ObjectStore, provider_uuid: str) -> int:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("object store unavailable")
        return real(self, provider_uuid)

    monkeypatch.setattr(ObjectStore, "delete_provider_data", down_for_a_while)
    monkeypatch.setattr(Backoff, "delay", lambda self, attempts: timedelta(seconds=0.05))  # the sensor's back-off
    harness.admin.delete_source(_sid(doomed))
    with dg.instance_for_test() as instance:
        seen_waiting = False
        end = time.monotonic() + 25
        while _row(harness, _sid(doomed)) is not None and time.monotonic() < end:
            context = dg.build_sensor_context(instance=instance, resources=_resources(harness))
            result = platform_sources_sensor(context)
            text = result.skip_reason or ""
            meta = {e.asset_key.to_user_string(): e.metadata for e in result.asset_events}
            waiting = meta.get("provider_records", {}).get("deletions_waiting")
            seen_waiting |= "1 deletions" in text or (waiting is not None and waiting.value == 1)
            time.sleep(0.05)
    assert failures["left"] == 0 and seen_waiting  # it waited visibly, and was never given up
    assert _row(harness, _sid(doomed)) is None and not files.exists()


def test_a_purge_longer_than_the_pass_goes_on_and_is_collected_next_pass(harness: Harness) -> None:
    doomed = _aws(harness, "Slow")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    uuid = _row(harness, _sid(doomed))["koku_uuid"]
    files = _provider_files(harness, uuid)
    started: list[float] = []
    release = threading.Event()

    def slow_purge(provider_uuid: str) -> int:
        started.append(time.monotonic())
        release.wait(10)
        return harness.store.delete_provider_data(provider_uuid)

    harness.admin.delete_source(_sid(doomed))
    slow = harness.sync(**FAST, operations_budget_seconds=1.0, total_budget_seconds=1.5)
    slow.operations.purge_data = slow_purge
    t0 = time.monotonic()
    first = slow.run_once()
    assert time.monotonic() - t0 < 5  # the pass kept its deadline
    assert [op.outcome for op in first.operations] == ["waiting"] and _row(harness, _sid(doomed))
    second = slow.run_once()  # still running: waited for, never started twice
    assert [op.outcome for op in second.operations] == ["waiting"] and len(started) == 1
    release.set()
    _until_quiet(slow)
    assert len(started) == 1 and _row(harness, _sid(doomed)) is None and not files.exists()


def test_events_past_the_apply_deadline_are_carried_not_lost(harness: Harness) -> None:
    created = [_aws(harness, f"Slow {i}") for i in range(4)]
    harness.standin.latency_ms = 150  # every call is slow: a pass applies only part of the batch
    sync = harness.sync(**FAST, apply_budget_seconds=0.6, drain_budget_seconds=0.0)
    first = sync.run_once()
    assert first.batch.carried > 0 and _committed(harness) < len(harness.standin.events)
    harness.standin.latency_ms = 0
    _until_quiet(sync)
    assert all(_row(harness, _sid(c))["koku_uuid"] for c in created)
    assert harness.table("sources_rejected_message", "offset") == []
    assert _committed(harness) == len(harness.standin.events)
