"""Koku's polling rules (scenarios 34-37 of koku-behaviour.md section 6), on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.schema import customer, provider
from koku_dagster.ingest.polling import (
    billing_months,
    currently_processing,
    months_to_ingest,
    record_poll,
    take_polling_batch,
)
from tests.resources import ingestion_resource

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def test_billing_months_current_first_and_distinct() -> None:
    assert billing_months(date(2026, 1, 15), 3) == [date(2026, 1, 1), date(2025, 12, 1), date(2025, 11, 1)]
    assert months_to_ingest(False, date(2026, 11, 26), 3) == [date(2026, 11, 1), date(2026, 10, 1), date(2026, 9, 1)]
    assert months_to_ingest(True, date(2026, 11, 26), 3) == [date(2026, 11, 1), date(2026, 10, 1)]


@pytest.mark.parametrize(
    "polled,updated,created,expected",
    [
        (None, None, NOW - 5 * DAY, False),  # never polled
        (NOW - DAY, NOW - 2 * DAY, NOW - 30 * DAY, True),  # polled after the last data update, recent
        (NOW - 2 * DAY, NOW - 7 * DAY, NOW - 30 * DAY, False),  # data stale beyond the wait: poll again
        (NOW, None, NOW, False),  # new provider: initial ingest allowed
        (NOW - DAY, None, NOW - DAY - timedelta(hours=1), True),  # created a day ago, no data yet
        (NOW - DAY, None, NOW - 9 * DAY, False),  # created long ago without data: assume it failed
    ],
)
def test_currently_processing(polled, updated, created, expected) -> None:
    assert currently_processing(polled, updated, created, NOW) is expected


def _add(conn: sa.Connection, uuid: str, type_: str = "AWS", **values: object) -> None:
    conn.execute(
        sa.insert(provider).values(
            uuid=uuid,
            name=uuid,
            type=type_,
            customer_id=1,
            created_timestamp=values.pop("created", NOW - 30 * DAY),
            reachable=values.pop("reachable", True),  # its reachability check passed
            **values,
        )
    )


def test_polling_batch_rules(db_url: str) -> None:
    engine = get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(customer).values(id=1, org_id="1", schema_name="org1", date_created=NOW, date_updated=NOW)
        )
        _add(conn, "a-never")
        _add(conn, "b-old", polling_timestamp=NOW - 2 * DAY, data_updated_timestamp=NOW - 9 * DAY)
        _add(conn, "c-recent", polling_timestamp=NOW - timedelta(hours=1))
        _add(conn, "d-ocp", "OCP")
        _add(conn, "e-paused", paused=True)
        _add(conn, "f-inactive", active=False)
        _add(conn, "g-busy", polling_timestamp=NOW - 2 * DAY, data_updated_timestamp=NOW - 2.5 * DAY)
        _add(conn, "h-azure-local", "Azure-local")
        _add(conn, "i-gcp-local", "GCP-local")
        _add(conn, "j-azure-blob", "Azure")
        _add(conn, "k-unchecked", reachable=None)  # not polled before its reachability check passes
        _add(conn, "l-unreachable", reachable=False)
    with engine.connect() as conn:
        before = dict(conn.execute(sa.select(provider.c.uuid, provider.c.polling_timestamp)).all())
    due = take_polling_batch(engine, NOW, 86400)
    assert [d.uuid for d in due] == ["a-never", "h-azure-local", "i-gcp-local", "j-azure-blob", "b-old"]
    with engine.connect() as conn:
        after = dict(conn.execute(sa.select(provider.c.uuid, provider.c.polling_timestamp)).all())
    assert after == before  # selecting writes nothing: the poll is recorded when its run starts
    assert take_polling_batch(engine, NOW, 86400, skip={"a-never", "b-old"})[0].uuid == "h-azure-local"
    for d in due:
        assert record_poll(engine, d.uuid, NOW)
        assert not record_poll(engine, d.uuid, NOW)  # the poll's other months: recorded once
    assert not record_poll(engine, "b-old", NOW - DAY)  # an older poll never overwrites a newer one
    assert take_polling_batch(engine, NOW + timedelta(hours=1), 86400) == []


def test_polling_batch_spreads_many_providers_over_the_day(db_url: str) -> None:
    engine = get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(customer).values(id=1, org_id="1", schema_name="org1", date_created=NOW, date_updated=NOW)
        )
        for i in range(50):
            _add(conn, f"p{i:02d}")
    first = take_polling_batch(engine, NOW, 86400)
    for d in first:
        record_poll(engine, d.uuid, NOW)
    second = take_polling_batch(engine, NOW + timedelta(hours=1), 86400)
    assert len(first) == 3 and len(second) == 3  # ceil(50 / 21)
    assert not {d.uuid for d in first} & {d.uuid for d in second}


def test_polling_schedule_requests_one_run_per_due_provider_month(db_url: str) -> None:
    import dagster as dg

    from koku_dagster.resources import ApplicationDatabase
    from koku_dagster.schedules.report_polling import report_polling_schedule

    engine = get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(customer).values(id=1, org_id="1", schema_name="org1", date_created=NOW, date_updated=NOW)
        )
        _add(conn, "a-new")
        _add(
            conn, "b-setup", setup_complete=True, polling_timestamp=NOW - 2 * DAY, data_updated_timestamp=NOW - 9 * DAY
        )
        _add(conn, "c-ocp", "OCP")
    resources = {
        "app_db": ApplicationDatabase(database_url=db_url),
        "ingestion": ingestion_resource("/tmp", initial_ingest_num_months=3),
    }
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW, resources=resources)
        requests = report_polling_schedule(context)
        keys = sorted(str(r.partition_key) for r in requests)
        assert keys == [
            "2026-09-01|a-new",
            "2026-10-01|a-new",
            "2026-10-01|b-setup",
            "2026-11-01|a-new",
            "2026-11-01|b-setup",
        ]
        assert all(r.run_key and r.run_key.startswith("poll:") for r in requests)
        assert {r.tags["koku/polled_at"] for r in requests} == {NOW.isoformat()}
        # Nothing recorded by the tick: a tick whose runs never started loses no poll.
        retried = report_polling_schedule(context)
        assert sorted(str(r.partition_key) for r in retried) == keys
        for uuid in ("a-new", "b-setup"):  # what the runs' report_manifest step does when they start
            record_poll(engine, uuid, NOW)
        again = report_polling_schedule(
            dg.build_schedule_context(
                instance=instance, scheduled_execution_time=NOW + timedelta(hours=1), resources=resources
            )
        )
        assert isinstance(again, dg.SkipReason)
