"""``kill -9`` of ``dagster-daemon`` (and its code server) then a restart, with the real daemon.

``dagster-daemon run`` starts on a temporary Dagster home (the repository's ``dagster.yaml``, SQLite
storage) and the repository's ``workspace.yaml``; the ``koku_dagster`` code location it starts reads
its settings from ``KOKU_*`` variables that point at the harness: the Tansu broker, the stand-in
Platform Sources and the application database. Runs are queued, never launched
(``max_concurrent_runs: 0``): the case is about the sensors' work, not the runs'.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus

from koku_dagster.infra.db.schema import sync_lease
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.sources.sync import SOURCES_GROUP
from koku_devtools.dagster_instance import instance_yaml
from koku_devtools.services import create_topics
from tests.conftest import Harness
from tests.fault_jobs import no_duplicates, table_rows

REPO = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).parent / "dagster-daemon"
SENSOR = "platform_sources_sensor"
#: The sensor's ``minimum_interval_seconds`` (10 s) plus the daemon's and code server's start on 2 busy cores.
WAIT_SECONDS = 120.0


class LiveDaemon:
    """``dagster-daemon run`` in its own process group (the daemon and the code server it starts)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(DAEMON), "run", "-w", str(REPO / "workspace.yaml")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_9(self) -> None:
        """SIGKILL to the whole group at once; any descendant outside the group too. Waits until all are gone."""
        assert self.proc is not None
        family = psutil.Process(self.proc.pid).children(recursive=True)
        os.killpg(self.proc.pid, signal.SIGKILL)
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.proc.wait(10)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"still running after kill -9: {alive}"

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_9()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _settings(harness: Harness, tmp_path: Path) -> dict[str, str]:
    """The environment of the daemon and its code location: a Dagster home and the harness's services."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    instance = yaml.safe_load(instance_yaml())
    instance["concurrency"]["runs"]["max_concurrent_runs"] = 0  # runs wait in the queue
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    uploads, validation = f"{harness.topic}-upload", f"{harness.topic}-validation"
    create_topics(harness.broker.bootstrap, [uploads, validation])
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KOKU_", "SOURCES_", "DAGSTER_"))},
        "DAGSTER_HOME": str(dagster_home),
        "KOKU_HOME": str(tmp_path / "koku"),
        "KOKU_DATABASE_URL": harness.url,
        "KOKU_OBJECT_STORE_URL": f"file://{harness.store.local_root}",
        "KOKU_LOCAL_BUCKET_ROOTS": str(harness.buckets),
        "KOKU_KAFKA_BOOTSTRAP_SERVERS": harness.broker.bootstrap,
        "KOKU_SOURCES_TOPIC": harness.topic,
        "KOKU_UPLOAD_TOPIC": uploads,
        "KOKU_VALIDATION_TOPIC": validation,
        "SOURCES_API_URL": harness.standin.url,
        "SOURCES_PSK": "sources-psk",
    }


@pytest.fixture
def daemon(harness: Harness, tmp_path: Path) -> Iterator[LiveDaemon]:
    live = LiveDaemon(_settings(harness, tmp_path), tmp_path / "daemon.log")
    try:
        yield live
    finally:
        live.stop()


def _ticks(instance: dg.DagsterInstance) -> list[Any]:
    """``platform_sources_sensor``'s ticks, newest first (none before the daemon stored its state)."""
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=200))
    return []


def _wait(ready: Callable[[], bool], what: str, daemon: LiveDaemon, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert daemon.alive(), f"the daemon exited while waiting for {what}:\n{daemon.tail()}"
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s:\n{daemon.tail()}"
        time.sleep(0.2)


def _provider_of(harness: Harness, source_id: int) -> dict[str, Any] | None:
    """The provider of a source once the source is linked to it."""
    rows = table_rows(harness.engine)
    uuids = [s["koku_uuid"] for s in rows["api_sources"] if s["source_id"] == source_id and s["koku_uuid"]]
    return next((p for p in rows["api_provider"] if p["uuid"] in uuids), None)


def _applied(harness: Harness, instance: dg.DagsterInstance, source_id: int) -> bool:
    """The source's provider exists, its partition too, and the tick that made it is over."""
    found = _provider_of(harness, source_id)
    if found is None or str(found["uuid"]) not in instance.get_dynamic_partitions("providers"):
        return False
    ticks = _ticks(instance)
    return bool(ticks) and ticks[0].status != TickStatus.STARTED


def _lease_held(harness: Harness) -> bool:
    with harness.engine.connect() as conn:
        return conn.execute(sa.select(sync_lease.c.holder).where(sync_lease.c.holder.is_not(None))).first() is not None


def _new_source(harness: Harness, name: str) -> int:
    return int(harness.admin.create_cost_source("ocp", name)["source"]["id"])


def _all_read(harness: Harness) -> bool:
    """The sources group committed every event the stand-in published (status pushes publish more)."""
    with BatchConsumer(harness.broker.bootstrap, harness.topic, SOURCES_GROUP) as consumer:
        return consumer.committed([0]) == {0: len(harness.standin.events)}


def _check_after(harness: Harness, instance: dg.DagsterInstance, ids: list[int], before: dict[str, Any]) -> None:
    """Every source once with one provider, the first one's provider untouched, partitions = providers,
    every event committed, ticks resumed without failure, no run asked for twice."""
    no_duplicates(harness.engine)
    rows = table_rows(harness.engine)
    assert [s["source_id"] for s in rows["api_sources"]] == ids
    assert len(rows["api_provider"]) == len(ids)
    assert _provider_of(harness, ids[0]) == before
    assert sorted(instance.get_dynamic_partitions("providers")) == sorted(str(p["uuid"]) for p in rows["api_provider"])
    assert rows["sources_parked_message"] == [] and rows["sources_rejected_message"] == []
    assert _all_read(harness)
    keys = Counter(r.tags.get("dagster/run_key") for r in instance.get_runs() if r.tags.get("dagster/run_key"))
    assert all(n == 1 for n in keys.values()), keys


def _ticks_since(instance: dg.DagsterInstance, restarted_at: float) -> list[Any]:
    """The finished ticks since the restart."""
    return [t for t in _ticks(instance) if t.timestamp >= restarted_at and t.status != TickStatus.STARTED]


def _ticks_resumed(instance: dg.DagsterInstance, restarted_at: float) -> list[Any]:
    """The ticks since the restart: at least one, each finished successfully or skipped."""
    after = _ticks_since(instance, restarted_at)
    assert after, "no sensor tick after the restart"
    assert {t.status for t in after} <= {TickStatus.SUCCESS, TickStatus.SKIPPED}, [t.status for t in after]
    return after


def _start_and_apply_first(
    harness: Harness, daemon: LiveDaemon, instance: dg.DagsterInstance
) -> tuple[int, dict[str, Any]]:
    """The daemon started, its running sensor applied a first source; the source id and its provider row."""
    first = _new_source(harness, "before the crash")
    daemon.start()
    _wait(lambda: _applied(harness, instance, first), "the first source's provider", daemon)
    states = [s.status for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
    assert len(states) == 1 and states[0] != InstigatorStatus.STOPPED, states  # running by default
    before = _provider_of(harness, first)
    assert before is not None
    return first, before


def test_kill_9_of_the_daemon_between_ticks(harness: Harness, daemon: LiveDaemon) -> None:
    """Killed after a tick applied the first source; a second created while it is down is applied
    once by the restarted daemon, the first is not touched, the sensor ticks on."""
    with dg.DagsterInstance.from_config(daemon.env["DAGSTER_HOME"]) as instance:
        first, before = _start_and_apply_first(harness, daemon, instance)
        daemon.kill_9()
        assert not _lease_held(harness)  # between passes
        second = _new_source(harness, "while the daemon is down")
        restarted_at, restarted = time.time(), time.monotonic()
        daemon.start()
        _wait(lambda: _applied(harness, instance, second), "the second source's provider", daemon)
        recovered = time.monotonic() - restarted
        _wait(lambda: _all_read(harness), "every event committed", daemon)
        _check_after(harness, instance, [first, second], before)
        resumed = _ticks_resumed(instance, restarted_at)
    print(
        f"kill -9 of dagster-daemon between ticks: second source applied {recovered:.1f}s after the restart; "
        f"{len(resumed)} ticks since"
    )


@pytest.mark.slow
def test_kill_9_of_the_daemon_in_a_sources_pass(harness: Harness, daemon: LiveDaemon) -> None:
    """Killed while a pass holds the lease and applies the second source (Platform Sources answering
    slowly); a third is created while it is down. After the restart the dead pass's lease expires
    and both are applied once; nothing of the first is repeated."""
    with dg.DagsterInstance.from_config(daemon.env["DAGSTER_HOME"]) as instance:
        first, before = _start_and_apply_first(harness, daemon, instance)
        harness.standin.latency_ms = 1500
        second = _new_source(harness, "in the killed pass")
        _wait(lambda: _lease_held(harness), "a pass holding the lease", daemon)
        daemon.kill_9()
        assert _provider_of(harness, second) is None, "the pass was over before the kill"
        harness.standin.latency_ms = 0
        third = _new_source(harness, "while the daemon is down")
        restarted_at, restarted = time.time(), time.monotonic()
        daemon.start()
        for source in (second, third):
            _wait(functools.partial(_applied, harness, instance, source), f"source {source}'s provider", daemon, 240)
        recovered = time.monotonic() - restarted
        _wait(lambda: _all_read(harness), "every event committed", daemon)
        _check_after(harness, instance, [first, second, third], before)
        resumed = _ticks_resumed(instance, restarted_at)
    print(
        f"kill -9 of dagster-daemon in a sources pass: both applied {recovered:.1f}s after the restart; "
        f"{len(resumed)} ticks since"
    )
