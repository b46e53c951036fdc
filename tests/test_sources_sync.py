"""End to end: stand-in Platform Sources -> Tansu -> SourcesSync -> tables (SQLite and PostgreSQL).

Scenario numbers refer to koku-behaviour.md section 6.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider, sources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.ingest.reachability import check_providers
from koku_dagster.providers.availability import DUPLICATE_ACCOUNT_MESSAGE
from koku_dagster.providers.base import ReportAccess
from koku_devtools.platform_sources.admin import identity_header
from tests.conftest import Harness, default_headers

ARN = "arn:aws:iam::111111111111:role/CostManagement"
UID = "5eebe172-7baa-4280-823f-19e597d091e9"


def _source(h: Harness, source_id: int) -> dict | None:
    rows = [r for r in h.table("api_sources", "source_id") if r["source_id"] == source_id]
    return rows[0] if rows else None


def _providers(h: Harness) -> list[dict]:
    return h.table("api_provider", "uuid")


def _check_all(h: Harness) -> None:
    """The reachability checks of every provider (what ``source_reachability_sensor``'s runs do)."""
    check_providers(h.engine, ReportAccess((h.buckets,), lambda *_: None), [p["uuid"] for p in _providers(h)])


def _aws(h: Harness, name: str = "Provider AWS", **kw) -> dict:
    bucket = h.buckets / name.replace(" ", "_")
    bucket.mkdir(exist_ok=True)
    kw.setdefault("role_arn", ARN)
    kw.setdefault("external_id", "ext-1")
    return h.admin.create_cost_source("aws-local", name, bucket=str(bucket), **kw)


def test_aws_happy_path_creates_source_provider_and_reports_available(harness: Harness) -> None:
    created = _aws(harness, uid=UID)
    source_id = int(created["source"]["id"])
    report = harness.run()[0]
    assert report.batch.read == 4 and report.batch.rejected == []
    assert _source(harness, source_id)["status"] is None  # not reported before its reachability check
    _check_all(harness)
    harness.run()

    row = _source(harness, source_id)
    assert row is not None
    assert row["source_type"] == "AWS-local" and row["name"] == "Provider AWS"
    assert row["source_uuid"] == UID and row["koku_uuid"] == UID
    assert row["authentication"] == {"credentials": {"role_arn": ARN, "external_id": "ext-1"}}
    assert row["billing_source"] == {"data_source": {"bucket": str(harness.buckets / "Provider_AWS")}}
    assert row["account_id"] == "10001" and row["org_id"] == "1234567"
    assert row["pending_update"] is False and row["status"]["availability_status"] == "available"

    (prov,) = _providers(harness)
    assert prov["uuid"] == UID and prov["type"] == "AWS-local" and prov["active"] and not prov["paused"]
    (customer,) = harness.table("api_customer", "id")
    assert customer["org_id"] == "1234567" and customer["schema_name"] == "org1234567"
    assert prov["customer_id"] == customer["id"]

    patches = harness.standin.status_patches(only_successful=True)
    assert patches == [
        (int(created["application"]["id"]), {"availability_status": "available", "availability_status_error": ""})
    ]
    # The PATCH makes the service emit Application.update; consuming it changes nothing and sends nothing.
    harness.settle()
    assert len(harness.standin.status_patches(only_successful=True)) == 1
    assert _source(harness, source_id)["status"]["availability_status"] == "available"


def test_updates_rename_rebill_and_rotate_credentials(harness: Harness) -> None:
    created = _aws(harness, uid=UID)
    source_id = int(created["source"]["id"])
    harness.settle()
    new_bucket = harness.buckets / "other"
    new_bucket.mkdir()
    harness.admin.update_source(source_id, name="Renamed AWS")
    harness.admin.update_source(source_id, name="Renamed AWS")  # duplicate: no change
    harness.admin.update_application_extra(created["application"]["id"], {"bucket": str(new_bucket)})
    new_arn = "arn:aws:iam::111111111111:role/Other"
    harness.admin.update_authentication(created["authentication"]["id"], username=new_arn)
    harness.settle()
    row = _source(harness, source_id)
    assert row["name"] == "Renamed AWS"
    assert row["billing_source"]["data_source"]["bucket"] == str(new_bucket)
    assert row["authentication"]["credentials"]["role_arn"] == new_arn
    assert row["pending_update"] is False
    (prov,) = _providers(harness)
    assert prov["name"] == "Renamed AWS"
    creds = [r["credentials"] for r in harness.table("api_providerauthentication", "id")]
    billing = [r["data_source"] for r in harness.table("api_providerbillingsource", "id")]
    assert creds == [{"role_arn": new_arn, "external_id": "ext-1"}]  # the old row is gone
    assert billing == [{"bucket": str(new_bucket)}]


def test_pause_and_unpause_follow_to_provider(harness: Harness) -> None:
    created = _aws(harness)
    source_id = int(created["source"]["id"])
    harness.settle()
    harness.admin.pause_source(source_id)
    harness.settle()
    assert _source(harness, source_id)["paused"] is True
    assert _providers(harness)[0]["paused"] is True
    harness.admin.unpause_source(source_id)
    harness.settle()
    assert _source(harness, source_id)["paused"] is False
    assert _providers(harness)[0]["paused"] is False


def test_delete_removes_provider_files_and_source(harness: Harness) -> None:
    created = _aws(harness, uid=UID)
    source_id = int(created["source"]["id"])
    keep = _aws(harness, "Other AWS", role_arn=ARN + "2")
    harness.settle()
    data = harness.store.local_root / "data"
    doomed = data / "csv" / "org1234567" / "AWS" / f"source={UID}" / "year=2026" / "month=11"
    doomed.mkdir(parents=True)
    (doomed / "a.csv").write_text("x")
    kept_uuid = _source(harness, int(keep["source"]["id"]))["koku_uuid"]
    kept = data / "parquet" / "org1234567" / "AWS" / f"source={kept_uuid}"
    kept.mkdir(parents=True)
    harness.admin.delete_source(source_id)
    harness.settle()
    assert _source(harness, source_id) is None
    assert [p["uuid"] for p in _providers(harness)] == [kept_uuid]
    assert not (data / "csv" / "org1234567" / "AWS" / f"source={UID}").exists()
    assert kept.exists()
    assert len(harness.table("api_providerauthentication", "id")) == 1


def test_ocp_source_needs_only_application_and_follows_cluster_id(harness: Harness) -> None:
    created = harness.admin.create_cost_source("ocp", "Cluster One", cluster_id="C1")
    source_id = int(created["source"]["id"])
    harness.settle()
    row = _source(harness, source_id)
    assert row["source_type"] == "OCP"
    assert row["authentication"] == {"credentials": {"cluster_id": "C1"}}
    assert row["billing_source"] in ({}, None)
    assert row["koku_uuid"] and _providers(harness)[0]["type"] == "OCP"
    harness.admin.update_source(source_id, source_ref="C2", name="Cluster Two")
    harness.settle()
    row = _source(harness, source_id)
    assert row["authentication"]["credentials"]["cluster_id"] == "C2" and row["name"] == "Cluster Two"
    assert _providers(harness)[0]["name"] == "Cluster Two"


def test_azure_credentials_from_three_calls_and_secret_never_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "very-secret-client-value"
    storage = harness.buckets / "azure"
    storage.mkdir()
    created = harness.admin.create_cost_source(
        "azure-local", "Azure", storage_account=str(storage), resource_group="rg", client_secret=secret
    )
    reports = harness.settle()
    row = _source(harness, int(created["source"]["id"]))
    assert row["authentication"]["credentials"]["client_secret"] == secret
    assert set(row["authentication"]["credentials"]) == {"client_id", "client_secret", "subscription_id", "tenant_id"}
    assert row["koku_uuid"]
    identity = identity_header("1234567", "10001")
    assert secret not in caplog.text and identity not in caplog.text
    assert all(secret not in repr(r) for r in reports)


def test_events_of_other_applications_are_ignored(harness: Harness) -> None:
    created = _aws(harness)
    source_id = int(created["source"]["id"])
    harness.settle()
    before = harness.table("api_sources", "source_id")
    harness.produce("Application.create", {"id": 99, "source_id": 4242, "application_type_id": 1})
    harness.produce("Authentication.create", {"id": "5", "source_id": 4242, "authtype": "arn"})
    harness.produce("Authentication.create", {"id": "6", "source_id": source_id, "authtype": "access_key_secret_key"})
    harness.produce("Source.create", {"id": 4242})
    harness.produce("Endpoint.create", {"id": 1, "source_id": source_id})
    report = harness.run()[0]
    assert report.batch.read == 5 and report.batch.applied == 0 and report.batch.rejected == []
    assert harness.table("api_sources", "source_id") == before


def test_malformed_messages_are_recorded_and_stream_continues(harness: Harness) -> None:
    bad_b64 = {**default_headers(), "x-rh-identity": b"%%%not-base64%%%"}
    no_identity = {k: v for k, v in default_headers().items() if k != "x-rh-identity"}
    no_org = {"x-rh-identity": base64.b64encode(json.dumps({"identity": {"account_number": "1"}}).encode())}
    harness.produce("Application.create", None, raw=b"{not json")
    harness.produce("Application.create", {"source_id": 1, "application_type_id": 2}, headers=bad_b64)
    harness.produce("Application.destroy", {"source_id": 1, "application_type_id": 2}, headers=no_identity)
    harness.produce("Application.create", {"source_id": 1, "application_type_id": 2}, headers=no_org)
    harness.produce("Application.create", {"source_id": "x" * 5000, "application_type_id": 2})
    harness.produce("Application.create", {"source_id": 10**40, "application_type_id": 2})
    created = _aws(harness)
    harness.settle()
    rejected = harness.table("sources_rejected_message", "offset")
    assert [r["offset"] for r in rejected] == [0, 1, 2, 3, 4, 5]
    assert "not valid JSON" in rejected[0]["reason"] and "base64" in rejected[1]["reason"]
    assert "x-rh-identity" in rejected[2]["reason"] and "org id" in rejected[3]["reason"]
    assert all(r["topic"] == harness.topic and r["partition"] == 0 for r in rejected)
    assert all("%%%" not in r["reason"] for r in rejected)
    assert _source(harness, int(created["source"]["id"]))["koku_uuid"]
    with BatchConsumer(harness.broker.bootstrap, harness.topic, "hccm-sources") as consumer:
        assert consumer.committed([0])[0] == 10 + len(harness.standin.events_of("Application.update"))


def test_platform_sources_outage_then_recovery_loses_nothing(harness: Harness) -> None:
    created = [_aws(harness, f"AWS {i}", role_arn=f"{ARN}{i}") for i in range(3)]
    harness.standin.inject_faults(status=503, count=10_000)
    report = harness.run()[0]
    assert report.api_available is False and report.batch.read == 0
    assert harness.table("api_sources", "source_id") == []
    harness.standin.clear_faults()
    harness.standin.stop()  # now connections are refused
    report = harness.run()[0]
    assert report.api_available is False
    harness.standin.start()
    harness.standin.inject_faults(status=503, count=3)  # flaky for a few calls mid-batch
    harness.settle(max_passes=10)
    rows = harness.table("api_sources", "source_id")
    assert len(rows) == 3 and all(r["koku_uuid"] for r in rows)
    assert len(_providers(harness)) == 3
    assert harness.table("sources_rejected_message", "offset") == []
    assert {int(c["source"]["id"]) for c in created} == {r["source_id"] for r in rows}


def test_destroy_before_create_leaves_tombstone_and_drops_late_create(harness: Harness) -> None:
    source = harness.admin.create_source("Late", "amazon-local")
    sid = int(source["id"])
    # The destroy arrives first while the source still exists on the platform.
    harness.produce("Application.destroy", {"id": 7, "source_id": sid, "application_type_id": 2})
    harness.run()
    row = _source(harness, sid)
    assert row is not None and row["out_of_order_delete"] is True
    harness.produce("Application.create", {"id": 7, "source_id": sid, "application_type_id": 2})
    harness.run()
    assert _source(harness, sid) is None and _providers(harness) == []


def test_destroy_of_unknown_source_gone_from_platform_does_nothing(harness: Harness) -> None:
    harness.produce("Application.destroy", {"id": 7, "source_id": 777, "application_type_id": 2})
    report = harness.run()[0]
    assert report.batch.read == 1 and harness.table("api_sources", "source_id") == []


def test_duplicate_account_is_refused_and_reported(harness: Harness) -> None:
    bucket = harness.buckets / "shared"
    bucket.mkdir()
    first = harness.admin.create_cost_source("aws-local", "First", bucket=str(bucket), role_arn=ARN)
    harness.settle()
    second = harness.admin.create_cost_source("aws-local", "Second", bucket=str(bucket), role_arn=ARN)
    harness.settle()
    assert len(_providers(harness)) == 1
    row = _source(harness, int(second["source"]["id"]))
    assert row["koku_uuid"] is None
    assert row["status"] == {
        "availability_status": "unavailable",
        "availability_status_error": DUPLICATE_ACCOUNT_MESSAGE,
    }
    app_id = int(second["application"]["id"])
    assert (app_id, row["status"]) in harness.standin.status_patches(only_successful=True)
    assert _source(harness, int(first["source"]["id"]))["koku_uuid"]


def test_local_bucket_outside_roots_is_refused(harness: Harness, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    created = harness.admin.create_cost_source("aws-local", "Escape", bucket=str(harness.buckets / ".." / "elsewhere"))
    other = harness.admin.create_cost_source("aws-local", "Outside", bucket=str(outside), role_arn=ARN + "x")
    harness.settle()
    assert _providers(harness) == []
    for c in (created, other):
        row = _source(harness, int(c["source"]["id"]))
        assert row["status"]["availability_status"] == "unavailable"


def test_replay_from_offset_zero_leaves_identical_tables(harness: Harness) -> None:
    a = _aws(harness, "A", uid=UID)
    _aws(harness, "B", role_arn=ARN + "b")
    harness.admin.create_cost_source("ocp", "C", cluster_id="C1")
    harness.admin.pause_source(int(a["source"]["id"]))
    doomed = _aws(harness, "D", role_arn=ARN + "d")
    harness.settle()
    harness.admin.delete_source(int(doomed["source"]["id"]))
    harness.settle()
    tables = ["api_sources", "api_provider", "api_customer", "api_providerauthentication", "api_providerbillingsource"]
    keys = {"api_sources": "source_id", "api_provider": "uuid"}

    def snapshot() -> dict[str, list[dict]]:
        out = {}
        for t in tables:
            rows = harness.table(t, keys.get(t, "id"))
            out[t] = [{k: v for k, v in r.items() if k != "updated_timestamp"} for r in rows]
        return out

    before = snapshot()
    with BatchConsumer(harness.broker.bootstrap, harness.topic, "hccm-sources") as consumer:
        consumer.commit({0: 0})
    reports = harness.settle()
    assert reports[0].batch.read > 10
    assert snapshot() == before
    assert harness.table("sources_rejected_message", "offset") == []


def test_crash_between_db_commit_and_offset_commit(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    created = _aws(harness, uid=UID)

    def crash(self, offsets, timeout=None):  # the process dies right after the database commit
        raise RuntimeError("simulated crash before offset commit")

    monkeypatch.setattr(BatchConsumer, "commit", crash)
    with pytest.raises(RuntimeError):
        harness.run()
    assert _source(harness, int(created["source"]["id"])) is not None  # effects are durable
    monkeypatch.undo()
    reports = harness.settle()
    assert reports[0].batch.read == 4  # the batch is delivered again
    assert [p["uuid"] for p in _providers(harness)] == [UID]
    assert len(harness.table("api_sources", "source_id")) == 1


def test_failing_deletion_is_never_given_up(harness: Harness) -> None:
    """A purge that keeps failing is retried with capped back-off, flagged and visible, and done once it works."""
    from datetime import timedelta

    from koku_dagster.sources.provider_operations import FAILING_AFTER_ATTEMPTS
    from koku_dagster.sources.sync import waiting_counts

    created = _aws(harness, uid=UID)
    keep = _aws(harness, "Keep", role_arn=ARN + "k")
    harness.settle()
    calls = []

    def broken_purge(uuid: str) -> int:
        calls.append(uuid)
        raise OSError("object store unavailable")

    harness.admin.delete_source(int(created["source"]["id"]))
    sync = harness.sync()
    sync.operations.purge_data = broken_purge
    now = utcnow()
    for i in range(FAILING_AFTER_ATTEMPTS + 4):
        sync.run_once(now=now + timedelta(hours=i))
    row = _source(harness, int(created["source"]["id"]))
    assert len(calls) == FAILING_AFTER_ATTEMPTS + 4  # every pass tried again, none gave up
    assert row["op_failed"] is True and "object store unavailable" in row["op_last_error"]
    assert row["pending_delete"] is True and "retries automatically" in row["status"]["availability_status_error"]
    assert waiting_counts(harness.engine)["deletions"] == 1
    assert UID in [p["uuid"] for p in _providers(harness)]  # nothing half-deleted
    assert _source(harness, int(keep["source"]["id"]))["koku_uuid"]  # others unaffected
    sync.operations.purge_data = harness.store.delete_provider_data  # the store is back
    report = sync.run_once(now=now + timedelta(days=2))
    assert report.deleted == [UID] and _source(harness, int(created["source"]["id"])) is None
    assert waiting_counts(harness.engine)["deletions"] == 0


def test_backlog_drains_over_bounded_ticks(harness: Harness) -> None:
    for i in range(5):
        _aws(harness, f"Backlog {i}", role_arn=f"{ARN}{i}")
    reads = []
    sync = harness.sync(max_messages=6, read_budget_seconds=2.0, drain_budget_seconds=0.0)
    for _ in range(8):
        reads.append(sync.run_once().batch.read)
    assert max(reads) <= 6 and sum(reads) >= 20
    drained = harness.sync(max_messages=6, read_budget_seconds=2.0, drain_budget_seconds=30.0)
    with BatchConsumer(harness.broker.bootstrap, harness.topic, "hccm-sources") as consumer:
        consumer.commit({0: 0})  # replay: one pass now takes the whole backlog, batch after batch
    report = drained.run_once()
    assert report.batch.read >= 20 and report.start_offsets == {0: 0}
    assert len(_providers(harness)) == 5


def test_one_failing_source_is_parked_and_others_proceed(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _aws(harness, "Bad", role_arn=ARN + "bad")
    good = _aws(harness, "Good", role_arn=ARN + "good")
    bad_id = int(bad["source"]["id"])
    from koku_dagster.sources.client import SourcesClient
    from koku_dagster.sources.errors import SourcesApiError

    real, real_list = SourcesClient.source_details, SourcesClient.sources_by_id

    def flaky(self, source_id, tenant):  # this one source's details always fail
        if source_id == bad_id:
            raise SourcesApiError(f"GET sources/{source_id}: status 500")
        return real(self, source_id, tenant)

    def listed(self, source_ids, tenant):  # and the bulk list leaves it out
        return {k: v for k, v in real_list(self, source_ids, tenant).items() if k != bad_id}

    monkeypatch.setattr(SourcesClient, "source_details", flaky)
    monkeypatch.setattr(SourcesClient, "sources_by_id", listed)
    first = harness.run()[0]
    assert first.batch.parked >= 1 and first.batch.retrying  # parked, offsets committed all the same
    with BatchConsumer(harness.broker.bootstrap, harness.topic, "hccm-sources") as consumer:
        assert consumer.committed([0])[0] == first.batch.read
    harness.settle(max_passes=4)
    assert harness.table("sources_rejected_message", "offset") == []  # never given up
    assert _source(harness, int(good["source"]["id"]))["koku_uuid"]
    assert len(_providers(harness)) == 1
    assert len(harness.table("sources_parked_message", "offset")) == first.batch.parked
    monkeypatch.undo()  # Platform Sources answers again: the parked events apply, in order
    harness.settle(max_passes=8)
    assert harness.table("sources_parked_message", "offset") == []
    assert _source(harness, bad_id)["koku_uuid"] and len(_providers(harness)) == 2


def test_kafka_outage_is_reported_and_local_work_goes_on(harness: Harness) -> None:
    from koku_dagster.sources.sync import SourcesSync, SyncLimits
    from koku_devtools.services import free_port

    created = _aws(harness, uid=UID)
    harness.settle()
    assert [p["uuid"] for p in _providers(harness)] == [UID]
    with harness.engine.begin() as conn:  # a delete decided before the broker went away
        conn.execute(sa.update(sources).values(pending_delete=True))
    dead = SourcesSync(
        harness.engine,
        harness.client,
        bootstrap=f"127.0.0.1:{free_port()}",
        topic=harness.topic,
        local_roots=(harness.buckets,),
        purge_data=harness.store.delete_provider_data,
        limits=SyncLimits(read_budget_seconds=1.0),
    )
    report = dead.run_once()
    assert report.kafka_available is False and report.batch.read == 0
    assert report.deleted == [UID] and _providers(harness) == []
    assert _source(harness, int(created["source"]["id"])) is None


def test_database_errors_do_not_reveal_bound_values(harness: Harness) -> None:
    secret_header = "c2VjcmV0LWlkZW50aXR5LWhlYWRlcg=="
    row = {"source_id": 1, "offset": 0, "auth_header": secret_header, "authentication": {}, "updated_timestamp": None}
    from koku_dagster.infra.db.types import utcnow

    row["updated_timestamp"] = utcnow()
    with harness.engine.begin() as conn:
        conn.execute(sa.insert(sources).values(**row))
    with pytest.raises(sa.exc.IntegrityError) as excinfo, harness.engine.begin() as conn:
        conn.execute(sa.insert(sources).values(**row))
    assert secret_header not in str(excinfo.value)


def test_aws_role_arn_falls_back_to_the_internal_password(harness: Harness) -> None:
    bucket = harness.buckets / "legacy"
    bucket.mkdir()
    source = harness.admin.create_source("Legacy AWS", "amazon-local")
    app = harness.admin.add_cost_application(source["id"], {"bucket": str(bucket)})
    harness.admin.add_authentication(app["id"], "arn", "", password=ARN)  # the ARN in the legacy place
    harness.settle()
    row = _source(harness, int(source["id"]))
    assert row["authentication"] == {"credentials": {"role_arn": ARN, "external_id": None}}
    assert row["koku_uuid"]


def test_database_outage_commits_nothing_and_recovers(harness: Harness, tmp_path: Path) -> None:
    from koku_dagster.infra.db.engine import dispose_engine, get_engine
    from koku_dagster.infra.db.migrate import migrate
    from koku_devtools.services import EmbeddedPostgres

    if not harness.url.startswith("postgresql"):
        pytest.skip("a server outage needs the PostgreSQL backend")
    with EmbeddedPostgres(tmp_path / "pgdown") as server:
        url = server.create_database("outage")
        migrate(url)
        harness.engine = get_engine(url)
        created = _aws(harness, uid=UID)
        server.stop()
        with pytest.raises(sa.exc.OperationalError):
            harness.run()
        server.start()
        harness.settle()
        assert _source(harness, int(created["source"]["id"]))["koku_uuid"] == UID
        assert [p["uuid"] for p in _providers(harness)] == [UID]
        dispose_engine(url)


def test_batch_asks_platform_sources_in_bulk(harness: Harness) -> None:
    for i in range(6):
        _aws(harness, f"Bulk {i}", role_arn=f"{ARN}{i}")
    before = len(harness.standin.requests)
    report = harness.run()[0]
    assert report.batch.read == 24 and len(_providers(harness)) == 6
    gets = [r for r in harness.standin.requests[before:] if r.method == "GET"]
    # one app-type lookup, three list calls, one source-type name; no per-source GETs
    assert report.batch.api_calls <= 4 and len(gets) <= 5, [r.path for r in gets]
    _check_all(harness)
    harness.run()
    patches = [r for r in harness.standin.requests[before:] if r.method == "PATCH"]
    assert len(patches) == 6  # statuses go straight to the remembered application ids


def test_a_failing_creation_does_not_hold_back_its_chunk(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from koku_dagster.sources import provider_operations

    created = [_aws(harness, f"Chunk {i}", role_arn=f"{ARN}{i}") for i in range(4)]
    bad_id = int(created[1]["source"]["id"])
    real = provider_operations.validate_provider_settings

    def broken(provider_type, credentials, data_source, local_roots):
        if credentials.get("role_arn") == f"{ARN}1":  # an unexpected failure for one source only
            raise RuntimeError("disk full")
        return real(provider_type, credentials, data_source, local_roots)

    monkeypatch.setattr(provider_operations, "validate_provider_settings", broken)
    report = harness.run()[0]
    outcomes = {r.source_id: r.outcome for r in report.operations}
    assert outcomes[bad_id] == "retry" and sum(o == "done" for o in outcomes.values()) == 3
    assert len(_providers(harness)) == 3
    row = _source(harness, bad_id)
    assert row["op_attempts"] == 1 and "disk full" in row["op_last_error"] and row["koku_uuid"] is None


def test_a_chunk_keeps_the_rules_in_source_order(harness: Harness) -> None:
    """Creations checked together, updates and existing provider rows one by one, in source order."""
    from koku_dagster.infra.db.schema import customer, provider_authentication, provider_billing_source
    from koku_dagster.sources.provider_operations import fingerprint

    def insert_json(conn: sa.Connection, table: sa.Table, column: str, value: dict) -> int:
        result = conn.execute(sa.insert(table).values(**{column: value, "fingerprint": fingerprint(value)}))
        return int(result.inserted_primary_key[0])

    def bucket(name: str) -> str:
        path = harness.buckets / name
        path.mkdir(exist_ok=True)
        return str(path)

    # s1 has no credentials yet (nothing to do); s2 gets its provider first.
    s1 = harness.admin.create_source("S1", "amazon-local")
    s1_app = harness.admin.add_cost_application(s1["id"], {"bucket": bucket("x")})
    s2 = _aws(harness, "S2", role_arn=ARN + "2")
    harness.settle()
    assert [p["name"] for p in _providers(harness)] == ["S2"]
    # A provider row left with s6's uid (say, by a crash): s6's creation takes it over.
    uid6 = "0b6c0f8e-2222-4e5e-9d9e-000000000006"
    with harness.engine.begin() as conn:
        customer_id = conn.execute(sa.select(customer.c.id)).scalar_one()
        conn.execute(
            sa.insert(provider).values(
                uuid=uid6,
                name="left over",
                type="AWS-local",
                customer_id=customer_id,
                active=True,
                paused=False,
                authentication_id=insert_json(conn, provider_authentication, "credentials", {"role_arn": ARN + "old"}),
                billing_source_id=insert_json(conn, provider_billing_source, "data_source", {"bucket": "/old"}),
                created_timestamp=utcnow(),
            )
        )
    # One pass: s1 create (account X), s2 update, s3 create (Y), s4 create (Y again: duplicate of s3),
    # s5 create (X again: duplicate of s1, created earlier in the same chunk), s6 create over the
    # existing row, s7 create.
    auth = harness.admin.add_authentication(s1_app["id"], "arn", ARN + "x")
    harness.admin.link_authentication(s1_app["id"], auth["id"])
    harness.admin.update_source(s2["source"]["id"], name="S2 renamed")
    s3 = harness.admin.create_cost_source("aws-local", "S3", bucket=bucket("y"), role_arn=ARN + "y")
    s4 = harness.admin.create_cost_source("aws-local", "S4", bucket=bucket("y"), role_arn=ARN + "y")
    s5 = harness.admin.create_cost_source("aws-local", "S5", bucket=bucket("x"), role_arn=ARN + "x")
    s6 = harness.admin.create_cost_source("aws-local", "S6", bucket=bucket("z"), role_arn=ARN + "z", uid=uid6)
    s7 = harness.admin.create_cost_source("aws-local", "S7", bucket=bucket("w"), role_arn=ARN + "w")
    report = harness.run()[0]

    ids = [int(s1["id"])] + [int(s["source"]["id"]) for s in (s2, s3, s4, s5, s6, s7)]
    outcomes = [(r.source_id, r.operation, r.outcome) for r in report.operations]
    assert outcomes == [
        (ids[0], "create", "done"),
        (ids[1], "update", "done"),
        (ids[2], "create", "done"),
        (ids[3], "create", "invalid"),
        (ids[4], "create", "invalid"),
        (ids[5], "create", "done"),
        (ids[6], "create", "done"),
    ]
    by_name = {p["name"]: p for p in _providers(harness)}
    assert sorted(by_name) == ["S1", "S2 renamed", "S3", "S6", "S7"]
    assert by_name["S6"]["uuid"] == uid6 and by_name["S6"]["customer_id"] == customer_id
    for i in (3, 4):
        row = _source(harness, ids[i])
        assert row["koku_uuid"] is None and row["status"]["availability_status_error"] == DUPLICATE_ACCOUNT_MESSAGE
    assert _source(harness, ids[5])["koku_uuid"] == uid6
    # The left-over row's credentials and billing were replaced, and the unused ones deleted.
    assert {r["credentials"]["role_arn"] for r in harness.table("api_providerauthentication", "id")} == {
        ARN + s for s in ("2", "x", "y", "z", "w")
    }
    assert "/old" not in {r["data_source"]["bucket"] for r in harness.table("api_providerbillingsource", "id")}
    assert len(harness.table("api_customer", "id")) == 1
    harness.settle()
    assert {(p["name"], p["uuid"]) for p in _providers(harness)} == {(n, p["uuid"]) for n, p in by_name.items()}
