"""Hostile and mistaken input to the sources integration, through the real path (Tansu, the stand-in
Platform Sources made to misbehave, SQLite and PostgreSQL): each case asserts what was recorded, what
Platform Sources was told, that nothing else was written, and that other tenants' events were applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from koku_dagster.infra.db.schema import sources
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.providers.base import LOCAL_ROOT_MESSAGE as ROOT_MESSAGE
from koku_dagster.sources.effects import NOT_STORED_MESSAGE
from koku_dagster.sources.lease import SyncLease
from koku_dagster.sources.local_folders import OVERLAP_MESSAGE
from koku_dagster.sources.platform import PlatformView
from koku_devtools.platform_sources.admin import StandInAdmin
from tests.conftest import Harness

ARN = "arn:aws:iam::111111111111:role/CostManagement"
UID_A = "5eebe172-7baa-4280-823f-19e597d091e9"

Row = dict[str, Any]


def _aws(h: Harness, name: str, admin: StandInAdmin | None = None, **kw: Any) -> dict[str, Any]:
    bucket = h.buckets / name.replace(" ", "_")
    bucket.mkdir(exist_ok=True)
    kw.setdefault("role_arn", f"{ARN}-{name.replace(' ', '')}")
    return (admin or h.admin).create_cost_source("aws-local", name, bucket=str(bucket), **kw)


def _tenant(h: Harness, org: str) -> StandInAdmin:
    return StandInAdmin(h.standin.url, org_id=org, account="")


def _sid(created: dict[str, Any]) -> int:
    return int(created["source"]["id"])


def _source(h: Harness, source_id: int) -> Row | None:
    rows = [r for r in h.table("api_sources", "source_id") if r["source_id"] == source_id]
    return rows[0] if rows else None


def _rewrite_rows(h: Harness, path: str, change: Callable[[Row], None], method: str = "GET") -> None:
    """Answers to ``path`` pass every row (or the single object) through ``change`` first."""

    def rewrite(status: int, payload: Any) -> tuple[int, bytes]:
        if isinstance(payload, dict):
            for row in payload.get("data", [payload]) if isinstance(payload.get("data"), list) else [payload]:
                change(row)
        return status, json.dumps(payload).encode()

    h.standin.rewrite_answers(method, path, rewrite)


def _for_source(source_id: int, key: str, value: Any, id_key: str = "id") -> Callable[[Row], None]:
    def change(row: Row) -> None:
        if str(row.get(id_key)) == str(source_id):
            row[key] = value

    return change


def _committed(h: Harness) -> int:
    with BatchConsumer(h.broker.bootstrap, h.topic, "hccm-sources") as consumer:
        return consumer.committed([0])[0]


def _assert_all_committed(h: Harness) -> None:
    """Once the passes settle, every message on the topic is behind the committed offset (nothing blocks)."""
    h.settle()
    assert _committed(h) == len(h.standin.events)


def _rejections(h: Harness) -> list[Row]:
    return h.table("sources_rejected_message", "offset")


def _assert_other_tenant_applied(h: Harness, created: dict[str, Any]) -> None:
    row = _source(h, _sid(created))
    assert row is not None and row["koku_uuid"], "another tenant's source in the same batch was not applied"


def _assert_unavailable(h: Harness, source_id: int, reason_part: str) -> Row:
    row = _source(h, source_id)
    assert row is not None and row["koku_uuid"] is None
    assert row["status"]["availability_status"] == "unavailable"
    assert reason_part in row["status"]["availability_status_error"]
    return row


# --------------------------------------------------------------------------- values the database cannot hold


def test_duplicate_uid_from_another_tenant_is_recorded_not_blocking(harness: Harness) -> None:
    victim = _aws(harness, "Victim", uid=UID_A)
    harness.settle()
    attacker = _aws(harness, "Attacker", _tenant(harness, "7777777"))
    bystander = _aws(harness, "Bystander", _tenant(harness, "8888888"))
    _rewrite_rows(harness, r"/sources(/\d+)?$", _for_source(_sid(attacker), "uid", UID_A))
    harness.settle()
    _assert_unavailable(harness, _sid(attacker), NOT_STORED_MESSAGE)
    assert _source(harness, _sid(attacker))["source_uuid"] is None
    assert _source(harness, _sid(victim))["koku_uuid"] == UID_A  # the victim's provider is untouched
    assert [p["uuid"] for p in harness.table("api_provider", "uuid") if p["uuid"] == UID_A] == [UID_A]
    assert {r["reason"] for r in _rejections(harness)} == {"the source's data could not be stored"}
    _assert_other_tenant_applied(harness, bystander)
    _assert_all_committed(harness)


def test_duplicate_uid_within_one_batch_isolates_only_the_second(harness: Harness) -> None:
    first = _aws(harness, "First", uid=UID_A)
    copycat = _aws(harness, "Copycat", _tenant(harness, "7777777"))
    _rewrite_rows(harness, r"/sources(/\d+)?$", _for_source(_sid(copycat), "uid", UID_A))
    report = harness.run()[0]
    assert report.batch.refused_sources == [_sid(copycat)]
    assert _source(harness, _sid(first))["koku_uuid"] == UID_A
    _assert_unavailable(harness, _sid(copycat), NOT_STORED_MESSAGE)
    _assert_all_committed(harness)


def test_application_id_beyond_64_bits_is_refused_at_the_client(harness: Harness) -> None:
    hostile = _aws(harness, "Overflow")
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    _rewrite_rows(harness, r"/applications$", _for_source(_sid(hostile), "id", 10**20, id_key="source_id"))
    harness.run()
    reasons = {r["reason"] for r in _rejections(harness)}
    assert any("application id is missing or not a valid id" in r for r in reasons)
    assert _source(harness, _sid(hostile)) is None  # nothing stored for it
    _assert_other_tenant_applied(harness, other)
    _assert_all_committed(harness)


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("uid", "5eebe172-7baa-4280-823f-19e597d091e9-and-more", "uid is longer than 36 characters"),
        ("uid", "not-a-uuid", "uid is not a uuid"),
        ("name", "evil\x00name", "name contains a NUL character"),
        ("name", "n" * 100_000, "name is longer than"),
        ("source_type_id", 10**20, "source_type_id is missing or not a valid id"),
    ],
)
def test_source_details_the_columns_cannot_hold_make_the_source_unavailable(
    harness: Harness, field: str, value: Any, reason: str
) -> None:
    hostile = _aws(harness, "Hostile")
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    _rewrite_rows(harness, r"/sources(/\d+)?$", _for_source(_sid(hostile), field, value))
    harness.settle()
    row = _assert_unavailable(harness, _sid(hostile), reason)
    assert row["name"] is None and row["source_uuid"] is None  # nothing of the bad answer was stored
    assert (row["application_id"], row["status"]) in harness.standin.status_patches(only_successful=True)
    _assert_other_tenant_applied(harness, other)
    _assert_all_committed(harness)


@pytest.mark.parametrize(
    "extra,reason",
    [
        ({"bucket": "/tmp/x\x00y"}, "contains a NUL character"),
        ({"bucket": "/tmp/x", "n": math.nan}, "not finite"),
        ({"bucket": "/tmp/x", "deep": json.loads("[" * 40 + "]" * 40)}, "nested too deeply"),
        ({"bucket": "/tmp/x", **{f"k{i}": i for i in range(3000)}}, "too many values"),
    ],
)
def test_application_extra_no_database_can_store_is_refused(harness: Harness, extra: Row, reason: str) -> None:
    hostile = _aws(harness, "Hostile")
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    _rewrite_rows(harness, r"/applications$", _for_source(_sid(hostile), "extra", extra, id_key="source_id"))
    harness.run()
    assert any(reason in r["reason"] for r in _rejections(harness))
    with harness.engine.connect() as conn:
        stored = conn.execute(sa.select(sources.c.billing_source).where(sources.c.source_id == _sid(hostile))).all()
    assert all("\x00" not in json.dumps(b) for (b,) in stored)
    _assert_other_tenant_applied(harness, other)
    _assert_all_committed(harness)


# --------------------------------------------------------------------------- the API client's limits


def test_authentication_id_with_a_path_is_never_put_into_a_url(harness: Harness) -> None:
    storage = harness.buckets / "az"
    storage.mkdir()
    hostile = harness.admin.create_cost_source(
        "azure-local", "Az", storage_account=str(storage), resource_group="rg", client_secret="s3cret"
    )
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    app_id = hostile["application"]["id"]
    _rewrite_rows(harness, r"/authentications$", _for_source(app_id, "id", "../../../admin/x", id_key="resource_id"))
    harness.settle()
    assert not [r for r in harness.standin.requests if "admin" in r.path or ".." in r.path]
    internal = [r for r in harness.standin.requests if r.path.startswith("/internal/")]
    assert internal == []  # the secret endpoint was never called with that id
    row = _source(harness, _sid(hostile))
    assert row["koku_uuid"] is None and "client_secret" not in json.dumps(row["authentication"])
    assert any("authentication id" in r["reason"] for r in _rejections(harness)) or (
        row["status"] and "authentication id" in row["status"]["availability_status_error"]
    )
    _assert_other_tenant_applied(harness, other)


def test_absurd_list_count_does_not_loop_or_grow(harness: Harness) -> None:
    created = [_aws(harness, f"Count {i}") for i in range(3)]

    def claim(status: int, payload: Any) -> tuple[int, bytes]:
        payload["meta"]["count"] = 10**12
        return status, json.dumps(payload).encode()

    harness.standin.rewrite_answers("GET", r"/(sources|applications|authentications)$", claim)
    before = len(harness.standin.requests)
    harness.settle()
    lists = [r for r in harness.standin.requests[before:] if r.path.endswith(("/sources", "/applications"))]
    assert len(lists) <= 20  # one refused page per list and pass, no paging on
    assert all(_source(harness, _sid(c))["koku_uuid"] for c in created)  # per-source calls did the work


def test_a_list_ignoring_offset_stops_at_the_page_cap(harness: Harness) -> None:
    created = _aws(harness, "Pages")

    def endless(status: int, payload: Any) -> tuple[int, bytes]:
        if payload["data"]:
            payload["data"], payload["meta"]["count"] = payload["data"][:1] * 1000, 9_000  # the same page, again
        return status, json.dumps(payload).encode()

    harness.standin.rewrite_answers("GET", r"v1\.0/sources$", endless)
    before = len(harness.standin.requests)
    harness.run()
    pages = [r for r in harness.standin.requests[before:] if r.path.endswith("/sources")]
    assert 1 <= len(pages) <= 10
    assert _source(harness, _sid(created))["koku_uuid"]


def test_oversized_answer_is_cut_off_and_the_source_reported(harness: Harness) -> None:
    hostile = _aws(harness, "Huge")
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    huge = json.dumps({"id": str(_sid(hostile)), "name": "x" * (20 * 1024 * 1024)}).encode()
    harness.standin.rewrite_answers("GET", rf"/sources/{_sid(hostile)}$", lambda status, _p: (200, huge))
    harness.standin.rewrite_answers("GET", r"/sources$", lambda status, _p: (200, huge))
    harness.settle()
    _assert_unavailable(harness, _sid(hostile), "larger than allowed")
    _assert_other_tenant_applied(harness, other)
    _assert_all_committed(harness)


# --------------------------------------------------------------------------- local folders


def test_local_folder_that_is_the_root_itself_is_refused(harness: Harness) -> None:
    created = harness.admin.create_cost_source("aws-local", "Root", bucket=str(harness.buckets), role_arn=ARN)
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    harness.settle()
    _assert_unavailable(harness, _sid(created), ROOT_MESSAGE)
    assert [p["name"] for p in harness.table("api_provider", "uuid")] == ["Other"]
    _assert_other_tenant_applied(harness, other)


@pytest.mark.parametrize("inside", [True, False], ids=["inside-other", "around-other"])
def test_folders_overlapping_another_organizations_are_refused(harness: Harness, inside: bool) -> None:
    first = harness.buckets / "shared"
    (first / "sub").mkdir(parents=True)
    owner_dir, intruder_dir = (first, first / "sub") if inside else (first / "sub", first)
    owner = harness.admin.create_cost_source("aws-local", "Owner", bucket=str(owner_dir), role_arn=ARN)
    harness.settle()
    intruder = _tenant(harness, "7777777").create_cost_source(
        "aws-local", "Intruder", bucket=str(intruder_dir), role_arn=ARN + "x"
    )
    harness.settle()
    _assert_unavailable(harness, _sid(intruder), OVERLAP_MESSAGE)
    assert [p["name"] for p in harness.table("api_provider", "uuid")] == ["Owner"]
    assert _source(harness, _sid(owner))["koku_uuid"]


def test_folders_of_one_organization_may_nest(harness: Harness) -> None:
    outer = harness.buckets / "mine"
    (outer / "inner").mkdir(parents=True)
    harness.admin.create_cost_source("aws-local", "Outer", bucket=str(outer), role_arn=ARN)
    harness.admin.create_cost_source("aws-local", "Inner", bucket=str(outer / "inner"), role_arn=ARN + "i")
    harness.settle()
    assert sorted(p["name"] for p in harness.table("api_provider", "uuid")) == ["Inner", "Outer"]


# --------------------------------------------------------------------------- one message, one source


def test_an_event_that_breaks_the_code_is_recorded_and_the_rest_applies(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koku_dagster.sources import processor

    hostile = _aws(harness, "Breaks")
    other = _aws(harness, "Other", _tenant(harness, "8888888"))
    real = processor._HANDLERS["Authentication.create"]

    def broken(record, event, platform):  # an unforeseen answer shape: a bug, for this source only
        if event.source_id == _sid(hostile):
            raise TypeError("unexpected shape")
        return real(record, event, platform)

    monkeypatch.setitem(processor._HANDLERS, "Authentication.create", broken)
    harness.run()
    rejected = _rejections(harness)
    assert [r["reason"] for r in rejected] == ["the event could not be applied (TypeError)"]
    assert rejected[0]["event_type"] == "Authentication.create"
    _assert_other_tenant_applied(harness, other)
    _assert_all_committed(harness)


def test_a_status_written_meanwhile_survives_the_batch(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    created = _aws(harness, "Busy")
    harness.settle()
    meanwhile = {"availability_status": "unavailable", "availability_status_error": "bucket not found"}
    harness.admin.pause_source(_sid(created))
    real = PlatformView.prefetch

    def write_meanwhile(self, *args, **kwargs):  # a run stores an availability after the batch loaded the row
        with harness.engine.begin() as conn:
            conn.execute(sa.update(sources).where(sources.c.source_id == _sid(created)).values(status=meanwhile))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PlatformView, "prefetch", write_meanwhile)
    harness.run()
    row = _source(harness, _sid(created))
    assert row["paused"] is True and row["status"] == meanwhile


# --------------------------------------------------------------------------- overlapping evaluations


def test_an_overlapping_evaluation_does_nothing(harness: Harness) -> None:
    created = _aws(harness, "Once")
    other = SyncLease(harness.engine, f"hccm-sources/{harness.topic}", 60)
    assert other.acquire()
    report = harness.run()[0]
    assert report.busy and report.batch.read == 0 and _source(harness, _sid(created)) is None
    assert _committed(harness) < 0
    other.release()
    assert harness.run()[0].batch.read == 4 and _source(harness, _sid(created))["koku_uuid"]


def test_a_pass_whose_lease_was_taken_over_commits_nothing(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from koku_dagster.infra.db.schema import sync_lease

    created = _aws(harness, "Late")
    real = PlatformView.prefetch

    def taken_over(self, *args, **kwargs):  # this pass is slow; another one took the lease meanwhile
        with harness.engine.begin() as conn:
            conn.execute(sa.update(sync_lease).values(holder="someone-else"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PlatformView, "prefetch", taken_over)
    report = harness.run()[0]
    assert report.busy and _source(harness, _sid(created)) is None
    assert _committed(harness) < 0  # offsets untouched: the other holder applies them
