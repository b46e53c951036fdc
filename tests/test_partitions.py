"""The billing_month dimension is the retention window up to the current month; nothing outside it is asked for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest
from dagster._core.errors import DagsterUnknownPartitionError

from koku_dagster.assets.ingest import daily_summary
from koku_dagster.assets.partitions import (
    billing_month_partitions,
    billing_month_partitions_for,
    provider_month_partitions,
)
from koku_dagster.definitions import build_resources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.settings import get_settings, settings_from_env
from koku_dagster.ingest.polling import billing_months, months_to_ingest

DEC_3 = datetime(2026, 12, 3, 13, tzinfo=UTC)


@dg.asset(partitions_def=provider_month_partitions)
def _probe() -> None:
    """An asset partitioned like the ingest assets, needing no resources."""


@pytest.mark.parametrize(
    ("retain", "expected"),
    [
        (1, ["2026-12-01"]),
        (4, ["2026-09-01", "2026-10-01", "2026-11-01", "2026-12-01"]),
        (13, ["2025-12-01"] + [f"2026-{m:02d}-01" for m in range(1, 13)]),
    ],
)
def test_window_is_the_months_kept_up_to_the_current_month(retain: int, expected: list[str]) -> None:
    keys = billing_month_partitions_for(retain, DEC_3.date()).get_partition_keys(current_time=DEC_3)
    assert keys == expected
    assert billing_months(DEC_3.date(), retain + 1)[-1].isoformat() not in keys  # one month too old
    assert "2027-01-01" not in keys  # next month: not yet


def test_a_location_running_across_a_month_boundary_grows_by_that_month_until_reloaded() -> None:
    months = billing_month_partitions_for(2, date(2026, 11, 30))
    assert months.get_partition_keys(current_time=DEC_3) == ["2026-10-01", "2026-11-01", "2026-12-01"]


def test_loaded_definition_follows_the_retention_setting() -> None:
    keys = billing_month_partitions.get_partition_keys()
    wanted = sorted(m.isoformat() for m in billing_months(utcnow().date(), get_settings().retain_num_months))
    assert keys == wanted


def test_partitions_per_asset_are_retention_times_providers() -> None:
    providers = [f"00000000-0000-4000-8000-{i:012d}" for i in range(25)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", providers)
        keys = provider_month_partitions.get_partition_keys(dynamic_partitions_store=instance)
    assert daily_summary.partitions_def == provider_month_partitions
    assert len(keys) == get_settings().retain_num_months * len(providers)


def test_a_month_outside_the_window_is_refused() -> None:
    old = billing_months(utcnow().date(), get_settings().retain_num_months + 1)[-1]
    uuid = "00000000-0000-4000-8000-000000000001"
    key = dg.MultiPartitionKey({"provider": uuid, "billing_month": old.isoformat()})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("providers", [uuid])
        assert key not in provider_month_partitions.get_partition_keys(dynamic_partitions_store=instance)
        with pytest.raises(DagsterUnknownPartitionError, match="Could not find a partition"):
            dg.materialize([_probe], partition_key=key, instance=instance)
        inside = dg.MultiPartitionKey(
            {"provider": uuid, "billing_month": billing_months(utcnow().date(), 1)[0].isoformat()}
        )
        assert dg.materialize([_probe], partition_key=inside, instance=instance).success


@pytest.mark.parametrize(("setup_complete", "initial", "retain", "count"), [(False, 6, 4, 4), (True, 3, 1, 1)])
def test_months_to_ingest_stay_inside_the_window(setup_complete: bool, initial: int, retain: int, count: int) -> None:
    months = months_to_ingest(setup_complete, DEC_3.date(), initial, retain)
    assert len(months) == count and months[0] == date(2026, 12, 1)
    window = billing_month_partitions_for(retain, DEC_3.date()).get_partition_keys(current_time=DEC_3)
    assert {m.isoformat() for m in months} <= set(window)


def test_initial_months_beyond_retention_are_not_wired_into_the_sensor(tmp_path) -> None:
    env = {"KOKU_HOME": str(tmp_path), "KOKU_INITIAL_INGEST_NUM_MONTHS": "6", "KOKU_RETAIN_NUM_MONTHS": "2"}
    ingestion = build_resources(settings_from_env(env))["ingestion"]
    assert (ingestion.initial_ingest_num_months, ingestion.retain_num_months) == (2, 2)  # type: ignore[attr-defined]
