"""Reachability checks of sources (Koku's cost_usage_source_ready): AWS against moto (STS with trust
policies enforced, S3) and a CUR API stand-in, local folders, the stand-in Platform Sources and both
databases; gating of ingestion until a check succeeds; the Dagster sensor and job."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from koku_dagster.assets.reachability import check_source_reachability
from koku_dagster.infra.db.schema import provider, sources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.ingest import workflow
from koku_dagster.ingest.polling import take_polling_batch
from koku_dagster.ingest.reachability import (
    CheckLimits,
    check_providers,
    claim_pending_ingestions,
    due_providers,
)
from koku_dagster.ingest.recording import fail_step
from koku_dagster.providers import aws, provider_type
from koku_dagster.providers.availability import CHECK_TIMEOUT_MESSAGE, READ_FAILED_MESSAGE
from koku_dagster.providers.base import ProviderContext, ReportAccess, Unreachable
from koku_dagster.sensors.platform_sources import platform_sources_sensor
from koku_dagster.sensors.reachability import source_reachability_sensor
from tests.conftest import Harness
from tests.test_sensor import _resources

LOCAL_MESSAGE = "The local folder of the source cannot be read."
ACCOUNT = "123456789012"  # moto's account
EXTERNAL_ID = "ext-7f3a9c"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
GOOD_REPORT = {
    "ReportName": "koku",
    "TimeUnit": "HOURLY",
    "Format": "textORcsv",
    "Compression": "GZIP",
    "AdditionalSchemaElements": ["RESOURCES"],
    "S3Bucket": "cur-bucket",
    "S3Prefix": "reports",
    "S3Region": "us-east-1",
}


def _no_s3(*_: Any) -> Any:
    raise AssertionError("the checks build their own AWS clients")


def _access(h: Harness) -> ReportAccess:
    return ReportAccess((h.buckets,), _no_s3)


def _provider(h: Harness) -> dict[str, Any]:
    (row,) = h.table("api_provider", "uuid")
    return row


def _status(h: Harness) -> dict[str, Any] | None:
    (row,) = h.table("api_sources", "source_id")
    return row["status"]


def _local_source(h: Harness, name: str = "cur") -> tuple[Path, int, str]:
    """A created AWS-local source: (its folder, its application id, its provider uuid)."""
    bucket = h.buckets / name
    bucket.mkdir()
    created = h.admin.create_cost_source("aws-local", f"Local {name}", bucket=str(bucket), external_id=EXTERNAL_ID)
    h.settle()
    return bucket, int(created["application"]["id"]), _provider(h)["uuid"]


def created_source_id(h: Harness) -> int:
    (row,) = h.table("api_sources", "source_id")
    return int(row["source_id"])


def _unavailable(message: str) -> dict[str, str]:
    return {"availability_status": "unavailable", "availability_status_error": message}


AVAILABLE = {"availability_status": "available", "availability_status_error": ""}


# --------------------------------------------------------------------------- local folders, statuses


def test_local_source_is_available_only_after_its_check_and_follows_its_folder(harness: Harness) -> None:
    bucket, app_id, uuid = _local_source(harness)
    row = _provider(harness)
    assert row["reachable"] is None and row["reachability_checked_timestamp"] is None
    assert not _status(harness) and not harness.standin.status_patches(True)  # never "available" unchecked
    assert [d.provider_uuid for d in due_providers(harness.engine, utcnow(), 10)] == [uuid]

    (outcome,) = check_providers(harness.engine, _access(harness), [uuid])
    assert outcome.reachable and outcome.recorded and outcome.message is None
    assert due_providers(harness.engine, utcnow(), 10) == []
    harness.settle()
    assert harness.standin.status_patches(True) == [(app_id, AVAILABLE)]

    shutil.rmtree(bucket)
    (outcome,) = check_providers(harness.engine, _access(harness), [uuid])
    assert not outcome.reachable and outcome.message == LOCAL_MESSAGE
    assert _provider(harness)["reachable"] is False and _provider(harness)["reachability_error"] == LOCAL_MESSAGE
    harness.settle()
    assert harness.standin.status_patches(True)[-1] == (app_id, _unavailable(LOCAL_MESSAGE))
    assert harness.admin.cost_application(created_source_id(harness))["availability_status"] == "unavailable"

    bucket.mkdir()
    check_providers(harness.engine, _access(harness), [uuid])
    harness.settle()
    assert harness.standin.status_patches(True)[-1] == (app_id, AVAILABLE)
    assert len(harness.standin.status_patches(True)) == 3  # each change sent once


def test_openshift_is_reachable_and_available_at_creation(harness: Harness) -> None:
    created = harness.admin.create_cost_source("ocp", "Cluster")
    harness.settle()
    row = _provider(harness)
    assert row["reachable"] is True and row["ingest_pending"] is None
    assert harness.standin.status_patches(True) == [(int(created["application"]["id"]), AVAILABLE)]


# --------------------------------------------------------------------------- gating


def _workplace(h: Harness, tmp_path: Path) -> workflow.Workplace:
    return workflow.Workplace(h.engine, h.store, _access(h), tmp_path / "work", tmp_path / "wh.duckdb", 4)


def test_a_new_provider_is_not_polled_or_ingested_until_checked(harness: Harness, tmp_path: Path) -> None:
    _, _, uuid = _local_source(harness)
    now = utcnow()
    assert take_polling_batch(harness.engine, now, 0) == []
    assert claim_pending_ingestions(harness.engine) == []
    found = workflow.find_manifest(_workplace(harness, tmp_path), uuid, now.date().replace(day=1))
    assert found.manifest_id is None and "reachability check" in found.notes[0]
    assert _provider(harness)["polling_timestamp"] is None

    check_providers(harness.engine, _access(harness), [uuid])
    (pending,) = claim_pending_ingestions(harness.engine)
    assert pending.provider_uuid == uuid and not pending.force
    assert claim_pending_ingestions(harness.engine) == []  # handed out once
    assert [p.uuid for p in take_polling_batch(harness.engine, now, 0)] == [uuid]
    found = workflow.find_manifest(_workplace(harness, tmp_path), uuid, now.date().replace(day=1))
    assert found.notes == (f"no manifest for {now:%Y-%m} yet",)


def test_a_billing_change_is_checked_again_before_it_is_ingested(harness: Harness) -> None:
    _, _, uuid = _local_source(harness)
    check_providers(harness.engine, _access(harness), [uuid])
    claim_pending_ingestions(harness.engine)
    (row,) = harness.table("api_sources", "source_id")
    app = harness.admin.cost_application(row["source_id"])
    assert app is not None
    other = harness.buckets / "other"
    other.mkdir()
    harness.admin.update_application_extra(app["id"], {"bucket": str(other)})
    harness.settle()
    changed = _provider(harness)
    assert changed["reachable"] is None and changed["reachability_checked_timestamp"] is None
    assert changed["ingest_pending"] == "reingest" and changed["settings_version"] == 1
    assert take_polling_batch(harness.engine, utcnow(), 0) == []
    assert claim_pending_ingestions(harness.engine) == []

    check_providers(harness.engine, _access(harness), [uuid])
    (pending,) = claim_pending_ingestions(harness.engine)
    assert pending.force and pending.stamp.endswith(".v1")

    harness.admin.update_source(row["source_id"], name="Renamed")  # not an account change: checked again only
    harness.settle()
    renamed = _provider(harness)
    assert renamed["reachable"] is True and renamed["reachability_checked_timestamp"] is None
    assert renamed["ingest_pending"] is None
    assert [d.provider_uuid for d in due_providers(harness.engine, utcnow(), 10)] == [uuid]


def test_a_check_of_settings_changed_meanwhile_is_not_recorded(harness: Harness) -> None:
    _, _, uuid = _local_source(harness)
    with harness.engine.begin() as conn:  # what an update committed during the check does
        conn.execute(sa.update(provider).values(settings_version=provider.c.settings_version + 1))
    from koku_dagster.ingest.reachability import CheckOutcome, record_outcome

    assert not record_outcome(harness.engine, CheckOutcome(uuid, True), 0, utcnow())
    assert _provider(harness)["reachable"] is None and not _status(harness)


def test_every_source_is_checked_again_daily(harness: Harness) -> None:
    _, _, uuid = _local_source(harness)
    check_providers(harness.engine, _access(harness), [uuid])
    now = utcnow()
    assert due_providers(harness.engine, now + timedelta(hours=23), 10) == []
    assert [d.provider_uuid for d in due_providers(harness.engine, now + timedelta(hours=25), 10)] == [uuid]
    with harness.engine.begin() as conn:
        conn.execute(sa.update(provider).values(reachability_checked_timestamp=now - timedelta(hours=30)))
    check_providers(harness.engine, _access(harness), [uuid])
    assert _provider(harness)["reachability_checked_timestamp"] > now


def test_ingestion_failures_report_a_fixed_message_and_log_redacted_text(harness: Harness) -> None:
    _, _, uuid = _local_source(harness)
    raw = RuntimeError(f"botocore said: ExternalId {EXTERNAL_ID} invalid for arn:aws:iam::999:role/x")
    failed = fail_step(harness.engine, None, "download", raw, uuid, unavailable=True)
    assert EXTERNAL_ID not in str(failed) and "<redacted>" in str(failed)
    assert _status(harness) == _unavailable(READ_FAILED_MESSAGE)
    with harness.engine.connect() as conn:
        assert conn.execute(sa.select(sources.c.status_push_pending)).scalar() is True


# --------------------------------------------------------------------------- Dagster: sensor and job


def test_sensor_runs_the_check_job_then_the_first_ingestion_starts(harness: Harness) -> None:
    bucket = harness.buckets / "dagster"
    bucket.mkdir()
    uid = "0b6c0f8e-2222-4e5e-9d9e-000000000001"
    harness.admin.create_cost_source("aws-local", "Dagster", bucket=str(bucket), uid=uid)
    resources = _resources(harness)
    with dg.instance_for_test() as instance:
        first = platform_sources_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(first, dg.SensorResult) and not first.run_requests  # created, not yet checked

        assert source_reachability_sensor.default_status == dg.DefaultSensorStatus.RUNNING
        result = source_reachability_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, dg.SensorResult) and result.run_requests
        (request,) = result.run_requests
        assert request.job_name == "check_source_reachability"
        config = request.run_config["ops"]["check_sources"]["config"]
        assert config == {"provider_uuids": [uid]}
        run = check_source_reachability.execute_in_process(run_config=request.run_config, resources=resources)
        assert run.success and _provider(harness)["reachable"] is True

        again = source_reachability_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert again.skip_reason is not None and not again.run_requests
        ingest = platform_sources_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(ingest, dg.SensorResult)
        keys = {r.run_key for r in ingest.run_requests}
        assert len(keys) == 3 and all(k.startswith(f"new:{uid}:") for k in keys)
        later = platform_sources_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert not later.run_requests
    patches = harness.standin.status_patches(True)
    assert patches and patches[-1][1] == AVAILABLE


# --------------------------------------------------------------------------- AWS: moto and a CUR API stand-in


class AwsWorld:
    """moto with IAM enforced (a user, a role trusting it with an external id) and the CUR stand-in."""

    def __init__(self, moto: Any, cur: Any) -> None:
        self.moto, self.cur = moto, cur
        iam = moto.client("iam")
        iam.create_user(UserName="koku")
        iam.put_user_policy(UserName="koku", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
        key = iam.create_access_key(UserName="koku")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        statement = {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/koku"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
        }
        trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        self.role_arn = iam.create_role(RoleName="cost", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.put_role_policy(RoleName="cost", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
        moto.client("s3").create_bucket(Bucket="cur-bucket")
        request = urllib.request.Request(
            f"{moto.endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10):  # from now on every request is authorised
            pass

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "AWS_ENDPOINT_URL_COST_AND_USAGE_REPORT_SERVICE": self.cur.url,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@pytest.fixture(scope="module")
def aws_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsWorld]:
    from koku_devtools.services import CurStandIn, MotoServer

    cur = CurStandIn()
    try:
        with MotoServer(workdir=tmp_path_factory.mktemp("moto-iam")) as server:
            yield AwsWorld(server, cur)
    finally:
        cur.close()


@pytest.fixture
def aws_env(aws_world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> AwsWorld:
    for name, value in aws_world.env().items():
        monkeypatch.setenv(name, value)
    aws_world.cur.reports, aws_world.cur.denied = [GOOD_REPORT], False
    return aws_world


def _aws_ctx(credentials: dict[str, Any], data_source: dict[str, Any]) -> ProviderContext:
    return ProviderContext("u", "n", "AWS", "org1", credentials, data_source, False, True, False)


def _aws_check(world: AwsWorld, external_id: str = EXTERNAL_ID, bucket: str = "cur-bucket", **ds: Any) -> str | None:
    ctx = _aws_ctx({"role_arn": world.role_arn, "external_id": external_id}, {"bucket": bucket, **ds})
    try:
        provider_type("AWS").check_reachable(ctx, ReportAccess((), _no_s3))
    except Unreachable as exc:
        return str(exc)
    return None


def test_aws_good_source_passes(aws_env: AwsWorld) -> None:
    aws_env.cur.signed_by.clear()
    assert _aws_check(aws_env) is None
    assert aws_env.cur.signed_by and aws_env.cur.signed_by[0] != aws_env.key_id  # signed as the assumed role
    assert _aws_check(aws_env, bucket="cur-bucket", storage_only=True) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"external_id": "wrong-external-id"}, aws.ROLE_MESSAGE),
        ({"bucket": "no-such-bucket"}, aws.BUCKET_MESSAGE),
        ({"reports": []}, aws.NO_REPORT_MESSAGE),
        ({"reports": [{**GOOD_REPORT, "S3Bucket": "another-bucket"}]}, aws.NO_REPORT_MESSAGE),
        ({"reports": [{**GOOD_REPORT, "Compression": "Parquet"}]}, aws.COMPRESSION_MESSAGE),
        ({"reports": [{**GOOD_REPORT, "AdditionalSchemaElements": []}]}, aws.RESOURCES_MESSAGE),
        ({"denied": True}, aws.REPORTS_DENIED_MESSAGE),
    ],
    ids=["external-id", "bucket", "no-cur", "cur-other-bucket", "compression", "no-resources", "cur-denied"],
)
def test_aws_failures_have_fixed_messages(aws_env: AwsWorld, change: dict[str, Any], message: str) -> None:
    aws_env.cur.reports = change.pop("reports", [GOOD_REPORT])
    aws_env.cur.denied = change.pop("denied", False)
    assert _aws_check(aws_env, **change) == message


def test_aws_source_unreachable_is_reported_to_platform_sources(aws_env: AwsWorld, harness: Harness) -> None:
    created = harness.admin.create_cost_source(
        "aws", "Real AWS", bucket="cur-bucket", role_arn=aws_env.role_arn, external_id="not-the-external-id"
    )
    harness.settle()
    uuid = _provider(harness)["uuid"]
    (outcome,) = check_providers(harness.engine, _access(harness), [uuid])
    assert outcome.message == aws.ROLE_MESSAGE
    assert outcome.cause is not None and "not-the-external-id" not in outcome.cause  # redacted raw text
    harness.settle()
    app_id = int(created["application"]["id"])
    assert harness.standin.status_patches(True) == [(app_id, _unavailable(aws.ROLE_MESSAGE))]
    assert take_polling_batch(harness.engine, utcnow(), 0) == []

    harness.admin.update_authentication(created["authentication"]["id"], extra={"external_id": EXTERNAL_ID})
    harness.settle()
    assert [d.provider_uuid for d in due_providers(harness.engine, utcnow(), 10)] == [uuid]
    (outcome,) = check_providers(harness.engine, _access(harness), [uuid])
    assert outcome.reachable
    harness.settle()
    assert harness.standin.status_patches(True)[-1] == (app_id, AVAILABLE)
    assert [p.uuid for p in take_polling_batch(harness.engine, utcnow(), 0)] == [uuid]


def test_a_check_that_hangs_times_out(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """STS accepts the connection and never answers: the check fails with the timeout message."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    harness.admin.create_cost_source("aws", "Hanging", bucket="b", role_arn=f"arn:aws:iam::{ACCOUNT}:role/r")
    harness.settle()
    uuid = _provider(harness)["uuid"]
    try:
        limits = CheckLimits(per_check_seconds=1.0, overall_seconds=20.0)
        (outcome,) = check_providers(harness.engine, _access(harness), [uuid], limits)
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert not outcome.reachable and outcome.message == CHECK_TIMEOUT_MESSAGE and outcome.recorded
    assert _status(harness) == _unavailable(CHECK_TIMEOUT_MESSAGE)


def test_cur_rules_pick_any_good_definition_of_the_bucket() -> None:
    bad = {**GOOD_REPORT, "Compression": "ZIP"}
    assert aws.cur_report_problem([bad, GOOD_REPORT], "cur-bucket") is None
    assert aws.cur_report_problem([{**GOOD_REPORT, "S3Bucket": "cur-bucket-2"}], "cur-bucket") == aws.NO_REPORT_MESSAGE
    assert aws.cur_report_problem([{**GOOD_REPORT, "Compression": "PLAIN"}], "cur-bucket") is None
