"""Platform Sources answering 503 for three minutes, an ``Application.destroy`` among the events
(the short case is ``tests/test_sources_faults.py``): nothing read or skipped while it is down, the
deletion completes once it answers again."""

from __future__ import annotations

import time

import pytest

from koku_dagster.sources.sync import waiting_counts
from tests.conftest import Harness
from tests.test_sources_faults import FAST, _aws, _committed, _provider_files, _row, _sid, _until_quiet


@pytest.mark.slow
def test_platform_sources_503_for_three_minutes_including_a_destroy(harness: Harness) -> None:
    doomed, kept = _aws(harness, "Doomed"), _aws(harness, "Kept")
    sync = harness.sync(**FAST)
    _until_quiet(sync)
    uuid = _row(harness, _sid(doomed))["koku_uuid"]
    files = _provider_files(harness, uuid)
    harness.admin.delete_source(_sid(doomed))
    late = _aws(harness, "Late")
    harness.standin.inject_faults(status=503, count=10**7)
    end = time.monotonic() + 180
    while time.monotonic() < end:  # the sensor ticks every few seconds all along
        report = sync.run_once()
        assert report.api_available is False and report.batch.read == 0
        assert _row(harness, _sid(doomed))["koku_uuid"] == uuid and files.exists()
        time.sleep(5)
    harness.standin.clear_faults()
    t0 = time.monotonic()
    _until_quiet(sync)
    print(f"Platform Sources 503 for 180 s: settled {time.monotonic() - t0:.1f}s after it answered again")
    assert _row(harness, _sid(doomed)) is None and not files.exists()
    assert uuid not in {p["uuid"] for p in harness.table("api_provider", "uuid")}
    assert _row(harness, _sid(kept))["koku_uuid"] and _row(harness, _sid(late))["koku_uuid"]
    assert harness.table("sources_rejected_message", "offset") == [] and not any(
        waiting_counts(harness.engine).values()
    )
    assert _committed(harness) == len(harness.standin.events)
