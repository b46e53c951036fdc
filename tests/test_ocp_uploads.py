"""OpenShift payload uploads end to end: announcement -> sensor -> payload run -> line items,
manifest, validation result -> summary runs -> summary; replays, poison messages and failures."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from koku_dagster.assets.ingest import daily_line_items, daily_summary
from koku_dagster.assets.ocp_uploads import ocp_payload_ingest
from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.migrate import SCHEMA_VERSION, migrate
from koku_dagster.infra.db.schema import metadata
from koku_dagster.infra.kafka import BatchConsumer, MessagePosition
from koku_dagster.reports.paths import csv_dir, ocp_line_items_dir
from koku_dagster.resources import ApplicationDatabase
from koku_dagster.sensors import ocp_upload as sensor_module
from koku_dagster.sensors.ocp_upload import ocp_upload_sensor
from koku_dagster.uploads.announcements import BadAnnouncement, parse_announcement, shown_url
from koku_dagster.uploads.download import FETCH_FAILED, UrlPolicy
from koku_dagster.uploads.intake import UPLOAD_GROUP
from koku_dagster.uploads.processing import UploadLimits, _reason, process_upload
from koku_devtools.nise_reports import OCP_CLUSTER_ID, generate
from koku_devtools.payloads import build_payload, payload_folders
from koku_devtools.platform_sources.admin import identity_header
from koku_devtools.services import create_topics
from koku_devtools.uploads import announce_payloads, announcement_body, produce_announcements
from tests.conftest import Harness
from tests.resources import cloud_apis_resource, ingestion_resource, kafka_resource, object_store_resource

MONTH = date(2026, 10, 1)
SCHEMA = "org1234567"
ORG = "1234567"
IDENTITY = identity_header(ORG, "10001")
SIGNED = "?X-Amz-Signature=topsecret-signature-value&X-Amz-Credential=AKIDEXAMPLE"
_readers = itertools.count()


@pytest.fixture(scope="session")
def nise_ocp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nise ``--insights-upload`` output for Oct 1-2 2026 (one report folder with manifest.json)."""
    root = tmp_path_factory.mktemp("nise-ocp")
    (folder,) = payload_folders(generate(root, MONTH, date(2026, 10, 3), kinds=("ocp",))["ocp"])
    return folder


@dataclass
class World:
    h: Harness
    upload_topic: str
    validation_topic: str
    provider_uuid: str
    instance: dg.DagsterInstance
    cursor: str | None = None

    def resources(self) -> dict[str, Any]:
        return {
            "app_db": ApplicationDatabase(database_url=self.h.url),
            "kafka": kafka_resource(
                bootstrap_servers=self.h.broker.bootstrap,
                upload_topic=self.upload_topic,
                validation_topic=self.validation_topic,
            ),
            "object_store": object_store_resource(url=self.h.store.url, local_bucket_roots=str(self.h.buckets)),
            "ingestion": ingestion_resource(str(self.h.store.local_root)),
            "cloud_apis": cloud_apis_resource(),
        }

    def announce(self, *bodies: dict[str, Any] | bytes, service: str | None = "hccm") -> None:
        produce_announcements(self.h.broker.bootstrap, self.upload_topic, bodies, service=service)

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources(), cursor=self.cursor)
        result = ocp_upload_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def run(self, request: dg.RunRequest) -> dg.ExecuteInJobResult:
        return ocp_payload_ingest.execute_in_process(
            run_config=request.run_config, resources=self.resources(), instance=self.instance, raise_on_error=False
        )

    def validations(self, reader: str) -> list[dict[str, Any]]:
        """Validation results not yet seen by ``reader`` (a consumer group of the test)."""
        with BatchConsumer(self.h.broker.bootstrap, self.validation_topic, reader) as consumer:
            messages, _ = consumer.read(max_messages=100, budget_seconds=5.0)
            consumer.commit({m.position.partition: m.position.offset + 1 for m in messages})
        return [json.loads(m.value or b"") for m in messages]

    def upload(self, request_id: str) -> dict[str, Any]:
        (row,) = [r for r in self.h.table("ocp_payload_upload", "id") if r["request_id"] == request_id]
        return row

    def store_files(self) -> dict[str, int]:
        root = self.h.store.local_root / "data"
        return (
            {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}
            if root.exists()
            else {}
        )


@pytest.fixture
def world(harness: Harness) -> Iterator[World]:
    upload_topic, validation_topic = f"{harness.topic}-announce", f"{harness.topic}-validation"
    create_topics(harness.broker.bootstrap, [upload_topic, validation_topic])
    harness.admin.create_cost_source("ocp", "OpenShift demo", cluster_id=OCP_CLUSTER_ID)
    harness.settle()
    uuid = harness.table("api_sources", "source_id")[-1]["koku_uuid"]
    assert uuid
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        yield World(harness, upload_topic, validation_topic, uuid, instance)


def _raw_pod_cpu_seconds(folder: Path) -> Decimal:
    """Independent total: pod CPU usage seconds summed exactly over the raw pod reports."""
    total = Decimal(0)
    for path in folder.glob("*.csv"):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "pod_usage_cpu_core_seconds" in (reader.fieldnames or []):
                total += sum((Decimal(r["pod_usage_cpu_core_seconds"] or 0) for r in reader), Decimal(0))
    assert total > 0
    return total


def _everything_logged(world: World, caplog: pytest.LogCaptureFixture, run_ids: list[str]) -> str:
    """Captured logs, the runs' Dagster events, and the tables ingestion writes (but the stored URL)."""
    events = [e for run_id in run_ids for e in world.instance.all_logs(run_id)]
    tables = [
        world.h.table(name, order_by)
        for name, order_by in (
            ("ocp_payload_upload", "id"),
            ("sources_rejected_message", "id"),
            ("reporting_common_costusagereportmanifest", "id"),
            ("reporting_common_costusagereportstatus", "id"),
        )
    ]
    urls = [row.pop("url") for row in tables[0]]
    assert not any(IDENTITY in url for url in urls)
    return "\n".join([caplog.text, *(repr(e) for e in events), repr(tables)])


def test_announcement_to_line_items_validation_and_summary_requests(
    world: World, nise_ocp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader = f"reader-{next(_readers)}"
    tar = build_payload(nise_ocp, world.h.buckets / "payload.tar.gz")
    body = announcement_body(tar.as_uri() + SIGNED, request_id="req-1", org_id=ORG)
    assert body["b64_identity"] == IDENTITY
    world.announce(b"{not json")  # poison: recorded, skipped
    world.announce({**body, "request_id": "for-advisor"}, service="advisor")  # another service: ignored
    world.announce(body)
    world.announce({"request_id": 5, "org_id": ORG, "url": body["url"]})  # poison: not a string

    first = world.tick()
    assert [r.run_key for r in first.run_requests] == ["ocp-payload:req-1"]
    assert first.run_requests[0].job_name == "ocp_payload_ingest"
    (event,) = first.asset_events
    assert event.metadata["messages_read"].value == 4
    assert event.metadata["messages_ignored"].value == 1 and event.metadata["messages_rejected"].value == 2
    rejected = world.h.table("sources_rejected_message", "offset")
    assert [(r["offset"], r["reason"]) for r in rejected] == [
        (0, "message body is not JSON"),
        (3, "request_id is not a string"),
    ]
    with BatchConsumer(world.h.broker.bootstrap, world.upload_topic, UPLOAD_GROUP) as consumer:
        assert consumer.committed([0]) == {0: 4}  # offsets committed after the rows
    assert [r["request_id"] for r in world.h.table("ocp_payload_upload", "id")] == ["req-1"]

    run = world.run(first.run_requests[0])
    assert run.success
    row = world.upload("req-1")
    assert row["state"] == "success" and row["reason"] is None
    assert row["provider_uuid"] == world.provider_uuid and row["cluster_id"] == OCP_CLUSTER_ID
    assert row["months"] == ["2026-10-01"] and row["validation_sent"]
    (mat,) = run.asset_materializations_for_node("process_ocp_payload")
    assert mat.asset_key == dg.AssetKey("line_items")
    assert mat.partition == dg.MultiPartitionKey({"provider": world.provider_uuid, "billing_month": "2026-10-01"})
    assert mat.metadata["manifest_uuid"].value == row["manifest_uuid"]
    assert mat.metadata["day_files_written"].value >= 4 and mat.metadata["rows"].value > 0
    root = world.h.store.local_root
    pods = sorted(ocp_line_items_dir(root, SCHEMA, "pod_usage", world.provider_uuid, MONTH).glob("*.parquet"))
    assert [p.name for p in pods] == [f"2026-10-0{d}_{row['manifest_uuid']}.parquet" for d in (1, 2)]
    archived = csv_dir(root, SCHEMA, "OCP", world.provider_uuid, MONTH) / row["manifest_uuid"]
    assert sorted(p.name for p in archived.iterdir()) == sorted(p.name for p in nise_ocp.glob("*.csv"))
    (manifest,) = world.h.table("reporting_common_costusagereportmanifest", "id")
    assert manifest["assembly_id"] == row["manifest_uuid"] and manifest["provider_id"] == world.provider_uuid
    assert manifest["billing_period_start_datetime"].date() == MONTH
    assert set(manifest["state"]) == {"download", "processing"}
    statuses = world.h.table("reporting_common_costusagereportstatus", "id")
    assert len(statuses) == manifest["num_total_files"] == 6 and all(s["status"] == 1 for s in statuses)
    assert world.validations(reader) == [{"request_id": "req-1", "validation": "success"}]

    second = world.tick()  # the payload run is handed over; the month's summary is asked for
    (summary,) = second.run_requests
    assert summary.run_key == "ocp-summary:req-1:2026-10-01" and summary.job_name == "provider_month_ingest"
    assert summary.tags["koku/ocp_line_items"] == "writer-or-reader"  # one at a time with payload runs
    assert summary.partition_key == mat.partition
    assert {k.to_user_string() for k in summary.asset_selection or []} == {"daily_line_items", "daily_summary"}
    summarised = dg.materialize(
        [daily_line_items, daily_summary],
        partition_key=summary.partition_key,
        resources=world.resources(),
        instance=world.instance,
        raise_on_error=False,
    )
    assert summarised.success
    assert {c.check_name: c.passed for c in summarised.get_asset_check_evaluations()} == {
        "summary_totals_match_raw": True,
        "no_rows_outside_month": True,
        "row_counts_consistent": True,
    }
    summary_files = sorted(
        (
            root
            / "data/summary/reporting_ocpusagelineitem_daily_summary"
            / f"source={world.provider_uuid}"
            / "year=2026/month=10"
        ).glob("*.parquet")
    )
    cpu_hours, clusters = (
        duckdb.connect()
        .execute(
            "SELECT sum(pod_usage_cpu_core_hours), list(DISTINCT cluster_id) FROM read_parquet(?)",
            [[str(f) for f in summary_files]],
        )
        .fetchone()
    )
    assert clusters == [OCP_CLUSTER_ID]
    assert abs(Decimal(str(cpu_hours)) - _raw_pod_cpu_seconds(nise_ocp) / 3600) < Decimal("0.000001")
    assert world.h.table("reporting_common_costusagereportmanifest", "id")[0]["completed_datetime"] is not None
    third = world.tick()
    assert not third.run_requests and third.skip_reason
    row = world.upload("req-1")
    assert row["run_requested"] and row["summaries_requested"]

    # Replaying the whole topic changes nothing; processing the upload again leaves the same state.
    with BatchConsumer(world.h.broker.bootstrap, world.upload_topic, UPLOAD_GROUP) as consumer:
        consumer.commit({0: 0})
    replay = world.tick()
    assert not replay.run_requests
    assert replay.asset_events[0].metadata["announcements_replayed"].value == 1
    assert len(world.h.table("sources_rejected_message", "id")) == 2
    before = world.store_files()
    again = world.run(first.run_requests[0])
    assert again.success
    assert world.store_files() == before
    after = world.upload("req-1")
    assert {k: after[k] for k in ("state", "months", "manifest_uuid", "summaries_requested", "validation_sent")} == {
        k: row[k] for k in ("state", "months", "manifest_uuid", "summaries_requested", "validation_sent")
    }
    assert len(world.h.table("reporting_common_costusagereportmanifest", "id")) == 1
    assert not world.tick().run_requests
    assert world.validations(reader) == []

    text = _everything_logged(world, caplog, [run.run_id, again.run_id])
    assert "req-1" in text and shown_url(body["url"]) in text  # the check below looks at real output
    assert IDENTITY not in text and "topsecret-signature-value" not in text
    assert world.upload("req-1")["url"] == body["url"]  # kept to download later, shown nowhere


def _payload_variant(nise_ocp: Path, out_dir: Path, name: str, **changes: Any) -> Path:
    """A copy of the nise folder with manifest fields changed, as a tarball under ``out_dir``."""
    folder = out_dir / f"{name}.d"
    shutil.copytree(nise_ocp, folder)
    doc = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(doc | changes))
    return build_payload(folder, out_dir / f"{name}.tar.gz")


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_failures_are_recorded_answered_and_touch_nothing_else(
    world: World, nise_ocp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader = f"reader-{next(_readers)}"
    buckets = world.h.buckets
    good = build_payload(nise_ocp, buckets / "good.tar.gz")
    outside = tmp_path / "outside"
    outside.mkdir()
    doc = json.loads((nise_ocp / "manifest.json").read_text())
    urls = {
        "good": good.as_uri() + SIGNED,
        "unknown-cluster": _payload_variant(nise_ocp, buckets, "other", cluster_id="someone-elses-cluster").as_uri(),
        "corrupt": (buckets / "corrupt.tar.gz").as_uri(),
        "missing-file": _tarball(
            buckets / "missing.tar.gz", {"manifest.json": json.dumps(doc | {"files": ["absent.csv"]}).encode()}
        ).as_uri()
        + SIGNED,
        "outside-roots": shutil.copy(good, outside / "good.tar.gz").as_uri() + SIGNED,
        "oversized": good.as_uri(),
    }
    (buckets / "corrupt.tar.gz").write_bytes(b"\x1f\x8b this is not a tarball")
    world.announce(*(announcement_body(url, request_id=rid, org_id=ORG) for rid, url in urls.items()))
    requests = {r.run_key.removeprefix("ocp-payload:"): r for r in world.tick().run_requests}
    assert set(requests) == set(urls)

    assert world.run(requests["good"]).success
    kept = world.store_files()
    assert kept
    runs = [world.run(requests[rid]) for rid in ("unknown-cluster", "corrupt", "missing-file", "outside-roots")]
    assert not any(r.success for r in runs)
    failure = runs[0].get_step_failure_events()[0]
    assert "no OpenShift provider is known for cluster 'someone-elses-cluster'" in str(
        failure.event_specific_data.error
    )
    # Oversized, processed by the core directly with a small limit (no validation sent by it).
    outcome = process_upload(
        world.h.engine,
        "oversized",
        object_store=world.h.store,
        url_policy=UrlPolicy(file_roots=(buckets,)),
        work_dir=tmp_path / "work",
        limits=UploadLimits(max_payload_bytes=1024),
    )
    assert not outcome.succeeded and not outcome.upload.validation_sent

    reasons = {rid: world.upload(rid)["reason"] for rid in urls}
    assert world.upload("good")["state"] == "success"
    assert all(world.upload(rid)["state"] == "failure" for rid in urls if rid != "good")
    assert reasons["unknown-cluster"].startswith("ClusterNotFoundError: no OpenShift provider")
    assert reasons["corrupt"].startswith("CorruptPayloadError:")
    assert (
        reasons["missing-file"] == "ReportFileMissingError: report file listed in the manifest is missing: absent.csv"
    )
    assert reasons["outside-roots"] == f"PayloadDownloadError: {FETCH_FAILED}"  # nothing about the target
    assert reasons["oversized"].startswith("PayloadTooLargeError:")
    assert world.upload("unknown-cluster")["cluster_id"] == "someone-elses-cluster"
    # Nothing else touched: the store and the manifests are as the good payload left them.
    assert world.store_files() == kept
    assert [m["assembly_id"] for m in world.h.table("reporting_common_costusagereportmanifest", "id")] == [doc["uuid"]]

    monkeypatch.setattr(sensor_module, "VALIDATION_GRACE", timedelta(0))  # the oversized result is owed
    world.tick()
    got = {v["request_id"]: v["validation"] for v in world.validations(reader)}
    assert got == {rid: "success" if rid == "good" else "failure" for rid in urls}
    assert all(world.upload(rid)["validation_sent"] for rid in urls)
    text = _everything_logged(world, caplog, [r.run_id for r in runs])
    assert "someone-elses-cluster" in text
    assert IDENTITY not in text and "topsecret-signature-value" not in text and "AKIDEXAMPLE" not in text


def test_devtool_announces_every_report_folder(world: World, nise_ocp: Path, tmp_path: Path) -> None:
    upload_root = tmp_path / "upload"
    shutil.copytree(nise_ocp, upload_root / "demo-cluster" / nise_ocp.name)
    bodies = announce_payloads(
        upload_root, world.h.buckets / "tarballs", bootstrap=world.h.broker.bootstrap, topic=world.upload_topic
    )
    (body,) = bodies
    assert body["url"].startswith("file://") and body["b64_identity"] and body["service"] == "hccm"
    (request,) = world.tick().run_requests
    assert request.run_key == f"ocp-payload:{body['request_id']}"
    assert world.run(request).success
    assert world.upload(body["request_id"])["months"] == ["2026-10-01"]


# --- pure logic -----------------------------------------------------------------------------------

POS = MessagePosition("t", 0, 7)
HCCM = [("service", b"hccm")]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty message body"),
        (b"[1, 2]", "message body is not a JSON object"),
        (b"\xff\xfe", "message body is not JSON"),
        (json.dumps({"org_id": "1", "url": "file:///x"}).encode(), "request_id is missing"),
        (json.dumps({"request_id": "r", "url": "file:///x"}).encode(), "org_id is missing"),
        (json.dumps({"request_id": "r", "org_id": "1"}).encode(), "url is missing"),
        (json.dumps({"request_id": "r", "org_id": 1, "url": "u"}).encode(), "org_id is not a string"),
        (json.dumps({"request_id": "r", "org_id": "1", "url": "u", "account": 5}).encode(), "account is not a string"),
        (
            json.dumps({"request_id": "r" * 300, "org_id": "1", "url": "u"}).encode(),
            "request_id is longer than 255 characters",
        ),
        (json.dumps({"request_id": " ", "org_id": "1", "url": "u"}).encode(), "request_id is empty"),
        (
            b'{"request_id": "r", "org_id": "1", "url": "u", "account": "\\ud800"}',
            "account holds control or unencodable characters",
        ),
        (
            b'{"request_id": "r", "org_id": "1", "url": "file:///x\\u0000y"}',
            "url holds control or unencodable characters",
        ),
        (b"[" * 100_000, "message body is not JSON"),
    ],
)
def test_malformed_announcements_are_poison(value: bytes, reason: str) -> None:
    with pytest.raises(BadAnnouncement) as caught:
        parse_announcement(POS, HCCM, value)
    assert str(caught.value) == reason


def test_announcement_fields_and_services() -> None:
    body = {
        "request_id": "r1",
        "org_id": "42",
        "url": "https://u:p@host:8443/p.tar.gz" + SIGNED,
        "b64_identity": identity_header("42", "10001"),
    }
    value = json.dumps(body).encode()
    assert parse_announcement(POS, [("service", b"advisor")], value) is None
    assert parse_announcement(POS, None, b"{bad") is None  # other services are not even parsed
    parsed = parse_announcement(POS, HCCM, value)
    assert parsed is not None and (parsed.request_id, parsed.org_id, parsed.account) == ("r1", "42", None)
    assert body["b64_identity"] not in repr(parsed) and "topsecret" not in repr(parsed) and "u:p" not in repr(parsed)
    assert shown_url(parsed.url) == "https://host:8443/p.tar.gz"
    reason = _reason(RuntimeError(f"https://u:p@host:8443/p.tar.gz: failed ({body['url']})"), body["url"])
    assert "topsecret" not in reason and "u:p@" not in reason and "host:8443/p.tar.gz" in reason


def test_schema_version_3_adds_the_upload_table(db_url: str) -> None:
    engine = get_engine(db_url)
    assert SCHEMA_VERSION >= 3
    with engine.begin() as conn:
        metadata.tables["ocp_payload_upload"].drop(conn)
        conn.execute(sa.text("DELETE FROM koku_schema_migration WHERE version = 3"))
    assert migrate(db_url) == 1
    assert "ocp_payload_upload" in sa.inspect(engine).get_table_names()
    assert migrate(db_url) == 0


def test_unexpected_errors_are_retried_then_the_upload_is_failed(world: World, nise_ocp: Path, tmp_path: Path) -> None:
    reader = f"reader-{next(_readers)}"
    tarball = build_payload(nise_ocp, world.h.buckets / "retry.tar.gz")
    world.announce(announcement_body(tarball.as_uri(), request_id="stuck", org_id=ORG))
    (request,) = world.tick().run_requests
    with world.h.engine.begin() as conn:  # two earlier attempts already failed unexpectedly
        conn.execute(sa.text("UPDATE ocp_payload_upload SET attempts = 2 WHERE request_id = 'stuck'"))
    not_a_folder = tmp_path / "store-is-a-file"
    not_a_folder.write_text("x")
    resources = world.resources() | {
        "object_store": object_store_resource(url=not_a_folder.as_uri(), local_bucket_roots=str(world.h.buckets))
    }
    result = ocp_payload_ingest.execute_in_process(
        run_config=request.run_config, resources=resources, instance=world.instance, raise_on_error=False
    )
    assert not result.success
    row = world.upload("stuck")
    assert row["state"] == "failure" and row["attempts"] == 3
    assert row["reason"].startswith("gave up after 3 attempts: ")
    assert world.validations(reader) == [{"request_id": "stuck", "validation": "failure"}]
    assert row["validation_sent"]


def test_runs_that_end_without_an_outcome_are_asked_again_then_the_upload_fails(
    world: World, nise_ocp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koku_dagster.assets.ocp_uploads import REQUEST_ID_TAG

    monkeypatch.setattr(sensor_module, "STALLED_AFTER", timedelta(0))
    monkeypatch.setattr(sensor_module, "VALIDATION_GRACE", timedelta(0))
    reader = f"reader-{next(_readers)}"
    tarball = build_payload(nise_ocp, world.h.buckets / "lost.tar.gz")
    world.announce(announcement_body(tarball.as_uri(), request_id="lost", org_id=ORG))
    (first,) = world.tick().run_requests
    assert first.run_key == "ocp-payload:lost" and first.tags["koku/ocp_line_items"] == "writer-or-reader"

    def dead_run(cancel: bool) -> None:
        """A run of the upload that ended without recording anything (killed, cancelled)."""
        run = world.instance.create_run_for_job(
            ocp_payload_ingest,
            run_config=first.run_config,
            tags={REQUEST_ID_TAG: "lost"},
            status=dg.DagsterRunStatus.STARTED,
        )
        (world.instance.report_run_canceled if cancel else world.instance.report_run_failed)(run)

    dead_run(cancel=True)
    again = [r.run_key for r in world.tick().run_requests]
    assert again == ["ocp-payload:lost:1"] and world.upload("lost")["state"] == "pending"
    dead_run(cancel=False)
    dead_run(cancel=False)
    world.tick()
    row = world.upload("lost")
    assert row["state"] == "failure" and row["reason"].startswith("gave up: 3 runs ended without recording an outcome")
    world.tick()  # the result is owed and sent
    assert world.validations(reader) == [{"request_id": "lost", "validation": "failure"}]


def test_a_provider_deleted_during_the_payload_run_keeps_nothing(
    world: World, nise_ocp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koku_dagster.uploads import processing

    tarball = build_payload(nise_ocp, world.h.buckets / "late.tar.gz")
    world.announce(announcement_body(tarball.as_uri(), request_id="late", org_id=ORG))
    world.tick()
    found = processing.find_cluster_provider

    def found_then_deleted(engine: sa.Engine, org_id: str, cluster_id: str) -> processing.ClusterProvider:
        target = found(engine, org_id, cluster_id)
        with engine.begin() as conn:  # the sources sensor deactivates it meanwhile (deletion starts so)
            conn.execute(sa.text("UPDATE api_provider SET active = false WHERE uuid = :u"), {"u": target.uuid})
        return target

    monkeypatch.setattr(processing, "find_cluster_provider", found_then_deleted)
    outcome = process_upload(
        world.h.engine,
        "late",
        object_store=world.h.store,
        url_policy=UrlPolicy(file_roots=(world.h.buckets,)),
        work_dir=tmp_path / "work",
    )
    assert not outcome.succeeded
    assert "was deleted or deactivated while the payload was processed" in (outcome.upload.reason or "")
    assert not [p for p in world.store_files() if f"source={world.provider_uuid}" in p]
    assert world.h.table("reporting_common_costusagereportmanifest", "id") == []
