"""Benchmark: scale of the Dagster layer with thousands of providers (``--only scale --providers N``).

Setup (not timed): a Tansu broker and the Platform Sources stand-in in its own process (as
``bench/sources_sync.py``); ``N`` cost sources are created through the stand-in's public API, and
the events of the first 1,000, 2,000 and ``N`` sources are copied to frozen topics. Then, per point
(1,000, 2,000 and ``N`` providers; each point has its own application database and Dagster home):

1. **burst**: in a fresh process, ``platform_sources_sensor`` is evaluated as the daemon does
   (``dg.build_sensor_context`` with the product's resources, its dynamic-partition requests applied
   to a real SQLite instance) tick after tick until every event is read and every provider and
   partition exists; every tick is timed against the pass budget;
2. **polling**: every provider marked reachable and never polled, ``report_polling_schedule`` is
   evaluated with the instance (median of 3);
3. **partitions**: ``providers`` x ``billing_month`` keys per asset; materializations of
   ``daily_summary`` are recorded for a fifth of the providers (two months each);
4. **live**: ``dagster api grpc`` (the code server), ``dagster-daemon run`` and ``dagster-webserver``
   start on that Dagster home (runs are queued, never launched: ``max_concurrent_runs: 0``). The
   UI's own partition-health query for ``daily_summary`` is timed over HTTP (first answer and
   median of 3 more), then the daemon runs the sensors for :data:`LIVE_SECONDS`; the peak RSS
   (``VmHWM``) of each process is read before it is stopped.

Last, each figure is fitted over the points (linear and power law) and projected to 50,000 providers.
Run one point's in-process part by hand: ``python -m bench.scale '<json config>'``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "scale"
SMALLER_POINTS = (1000, 2000)
PROJECT_TO = 50_000
#: A sensor pass stops starting work after ``SyncLimits.total_budget_seconds``; Dagster cancels a tick at 60 s.
PASS_BUDGET_SECONDS = 30.0
DAGSTER_TICK_LIMIT_SECONDS = 60.0
SENSOR_INTERVAL_SECONDS = 10.0
POLLING_GOAL_SECONDS = 10.0
LIVE_SECONDS = 30.0
#: Providers whose first ingestion the live daemon requests (x 3 months: the runs it creates in one sensor tick).
LIVE_INGESTIONS = 20
LIVE_TIMEOUT = 150.0
ABSORB_TIMEOUT = 900.0
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""
PARTITION_STATS_QUERY = """
query PartitionStats($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode { partitionStats { numMaterialized numMaterializing numFailed numPartitions } }
  }
}
"""


def _say(text: str) -> None:
    print(f"[bench:{NAME}] {text}", file=sys.stderr, flush=True)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


# =============================================================================== child side


def _apply_partition_requests(instance: Any, result: Any) -> None:
    """What the daemon does with a sensor's dynamic-partition requests."""
    import dagster as dg

    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _provider_count(engine: Any) -> int:
    import sqlalchemy as sa

    from koku_dagster.infra.db.schema import provider

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(provider)).scalar() or 0)


def _absorb(instance: Any, resources: dict[str, Any], engine: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Sensor ticks back to back until the burst is absorbed: events read, providers and partitions there."""
    import dagster as dg

    from koku_dagster.sensors.platform_sources import platform_sources_sensor

    ticks: list[dict[str, Any]] = []
    read = 0
    started = time.monotonic()
    while time.monotonic() - started < ABSORB_TIMEOUT:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        t0 = time.monotonic()
        result = platform_sources_sensor(context)
        assert isinstance(result, dg.SensorResult)
        tick_s = time.monotonic() - t0
        _apply_partition_requests(instance, result)
        write_s = time.monotonic() - t0 - tick_s
        events = {e.asset_key.to_user_string(): e.metadata for e in result.asset_events or []}
        tick_read = int(str(events["source_records"]["events_read"].value)) if "source_records" in events else 0
        read += tick_read
        ticks.append({"s": round(tick_s, 2), "partition_writes_s": round(write_s, 2), "read": tick_read})
        if result.skip_reason and read >= cfg["events"] and _provider_count(engine) >= cfg["count"]:
            break
    busy = ticks[:-1] or ticks  # the last tick found nothing to do
    return {
        "ticks": ticks,
        "events_read": read,
        "providers": _provider_count(engine),
        "partitions": len(instance.get_dynamic_partitions("providers")),
        "absorb_s": sum(t["s"] + t["partition_writes_s"] for t in busy),
        # the daemon starts a tick at most every 10 s (``minimum_interval_seconds``)
        "absorb_daemon_s": sum(max(t["s"] + t["partition_writes_s"], SENSOR_INTERVAL_SECONDS) for t in busy[:-1])
        + busy[-1]["s"]
        + busy[-1]["partition_writes_s"],
        "longest_tick_s": max(t["s"] for t in ticks),
        "longest_partition_writes_s": max(t["partition_writes_s"] for t in ticks),
        "quiet_tick_s": ticks[-1]["s"],
        "load_absorb": _load(),
    }


def _polling(instance: Any, resources: dict[str, Any], engine: Any) -> dict[str, Any]:
    """Every provider reachable and never polled, then ``report_polling_schedule`` evaluated 3 times."""
    from datetime import UTC, datetime

    import dagster as dg
    import sqlalchemy as sa

    from koku_dagster.infra.db.schema import provider
    from koku_dagster.schedules.report_polling import report_polling_schedule

    with engine.begin() as conn:
        conn.execute(sa.update(provider).values(reachable=True, polling_timestamp=None, paused=False, active=True))
    times, requests = [], 0
    for _ in range(3):
        context = dg.build_schedule_context(
            instance=instance, resources=resources, scheduled_execution_time=datetime.now(UTC)
        )
        t0 = time.monotonic()
        result = report_polling_schedule(context)
        times.append(time.monotonic() - t0)
        requests = len(result) if isinstance(result, list) else 0
    _leave_pending(engine, LIVE_INGESTIONS)
    return {
        "polling_s": statistics.median(times),
        "polling_all_s": [round(t, 3) for t in times],
        "polling_runs": requests,
        "load_polling": _load(),
    }


def _leave_pending(engine: Any, count: int) -> None:
    """Only ``count`` providers keep their first ingestion waiting: the live daemon's sensor tick requests
    their runs (3 months each), which times the daemon's run creation without flooding the short live phase."""
    import sqlalchemy as sa

    from koku_dagster.infra.db.schema import provider
    from koku_dagster.providers import POLLED_TYPES

    keep = sa.select(provider.c.uuid).where(provider.c.type.in_(sorted(POLLED_TYPES))).order_by(provider.c.uuid)
    with engine.begin() as conn:
        kept = list(conn.execute(keep.limit(count)).scalars())
        conn.execute(sa.update(provider).where(provider.c.uuid.not_in(kept)).values(ingest_pending=None))


def _partitions_and_history(instance: Any) -> dict[str, Any]:
    """Partition keys per asset, and ``daily_summary`` materializations for a fifth of the providers."""
    import dagster as dg

    from koku_dagster.assets.partitions import billing_month_partitions, provider_month_partitions
    from koku_dagster.definitions import defs

    providers = instance.get_dynamic_partitions("providers")
    months = billing_month_partitions.get_partition_keys()
    assets = [s.key.to_user_string() for s in defs().resolve_all_asset_specs() if s.partitions_def is not None]
    multi = [
        s.key.to_user_string()
        for s in defs().resolve_all_asset_specs()
        if s.partitions_def == provider_month_partitions
    ]
    t0 = time.monotonic()
    for uuid in providers[: max(1, len(providers) // 5)]:
        for month in months[-2:]:
            key = dg.MultiPartitionKey({"provider": uuid, "billing_month": month})
            instance.report_runless_asset_event(dg.AssetMaterialization("daily_summary", partition=key))
    recorded = max(1, len(providers) // 5) * len(months[-2:])
    return {
        "months": len(months),
        "partitions_per_asset": len(providers) * len(months),
        "partitioned_assets": assets,
        "provider_month_assets": multi,
        "materializations": recorded,
        "materializations_s": time.monotonic() - t0,
    }


def _child(cfg: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(cfg["env"])
    import dagster as dg

    from koku_dagster.definitions import build_resources
    from koku_dagster.infra.settings import settings_from_env
    from koku_dagster.resources import ApplicationDatabase

    resources: dict[str, Any] = dict(build_resources(settings_from_env()))
    engine = ApplicationDatabase(database_url=cfg["env"]["KOKU_DATABASE_URL"]).engine()  # resources hold EnvVars
    with dg.DagsterInstance.get() as instance:
        result = _absorb(instance, resources, engine, cfg)
        result |= _polling(instance, resources, engine)
        result |= _partitions_and_history(instance)
    return result


# =============================================================================== parent side


def _environment(workdir: Path, svc: Any, count: int, topic: str) -> dict[str, str]:
    """The settings of one point's code location: its own KOKU_HOME, database and frozen topic."""
    from bench.sources_sync import API_PREFIX, INTERNAL_PREFIX, PSK

    home = workdir / f"koku-{count}"
    (home / "buckets").mkdir(parents=True, exist_ok=True)
    return {
        "DAGSTER_HOME": str(_dagster_home(workdir / f"dagster-{count}")),
        "KOKU_HOME": str(home),
        "KOKU_DATABASE_URL": f"sqlite:///{home / 'koku.db'}",
        "KOKU_KAFKA_BOOTSTRAP_SERVERS": svc.broker.bootstrap,
        "KOKU_SOURCES_TOPIC": topic,
        "KOKU_UPLOAD_TOPIC": f"bench.scale.upload.{count}",
        "SOURCES_API_URL": svc.api,
        "SOURCES_API_PREFIX": API_PREFIX,
        "SOURCES_INTERNAL_API_PREFIX": INTERNAL_PREFIX,
        "SOURCES_PSK": PSK,
    }


def _dagster_home(path: Path) -> Path:
    """The project's instance settings, except that queued runs are never launched (no run workers)."""
    import yaml

    from koku_devtools.dagster_instance import instance_yaml

    settings = yaml.safe_load(instance_yaml())
    settings["concurrency"]["runs"]["max_concurrent_runs"] = 0
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return path


def _run_child(cfg: dict[str, Any], log_path: Path) -> dict[str, Any]:
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.scale", json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
            env={**os.environ, **cfg["env"]},
            check=False,
        )
    lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"scale point {cfg['count']} failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def _start(name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with open(workdir / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=REPO,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_until(ready: Any, what: str, procs: dict[str, subprocess.Popen[bytes]], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, p in procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready (exited: {dead or 'none'}); see the logs in the work dir")
        time.sleep(0.25)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _graphql(url: str, query: str) -> tuple[float, dict[str, Any]]:
    import requests

    t0 = time.monotonic()
    answer = requests.post(
        url, json={"query": query, "variables": {"assetKey": {"path": ["daily_summary"]}}}, timeout=600
    )
    seconds = time.monotonic() - t0
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors") or "partitionKeysByDimension" not in json.dumps(body) and query is PARTITION_HEALTH_QUERY:
        raise RuntimeError(f"GraphQL answer without partitions: {json.dumps(body)[:500]}")
    return seconds, body


def _time_queries(web_port: int, count: int) -> dict[str, Any]:
    """The asset page's partition-health query: the first answer (builds Dagster's status cache), then 3 more."""
    url = f"http://127.0.0.1:{web_port}/graphql"
    first, body = _graphql(url, PARTITION_HEALTH_QUERY)
    dims = {d["name"]: len(d["partitionKeys"]) for d in body["data"]["assetNodeOrError"]["partitionKeysByDimension"]}
    warm = [_graphql(url, PARTITION_HEALTH_QUERY)[0] for _ in range(3)]
    stats_s, stats = _graphql(url, PARTITION_STATS_QUERY)
    return {
        "graphql_first_s": first,
        "graphql_s": statistics.median(warm),
        "graphql_all_s": [round(first, 2)] + [round(w, 2) for w in warm],
        "graphql_dims": dims,
        "graphql_bytes": len(json.dumps(body)),
        "graphql_stats_s": stats_s,
        "graphql_stats": stats["data"]["assetNodeOrError"].get("partitionStats"),
        "graphql_ok": dims.get("provider") == count,
        "load_graphql": _load(),
    }


def _daemon_ticks(dagster_home: str) -> dict[str, Any]:
    """Ticks the daemon ran meanwhile: per sensor or schedule, how many and the longest (seconds)."""
    import dagster as dg

    ticks: dict[str, Any] = {}
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        for state in instance.all_instigator_state():
            found = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
            done = [((t.end_timestamp or t.timestamp) - t.timestamp, len(t.run_ids)) for t in found if t.end_timestamp]
            if found:
                longest_s, runs = max(done, default=(0.0, 0))
                ticks[state.instigator_name] = {
                    "ticks": len(found),
                    "longest_s": round(longest_s, 2),
                    "longest_runs": runs,
                    "statuses": sorted({t.status.value for t in found}),
                }
    return ticks


def _sensor_runs_done(dagster_home: str) -> bool:
    """The live daemon finished a ``platform_sources_sensor`` tick that created runs."""
    found = _daemon_ticks(dagster_home).get("platform_sources_sensor", {})
    return bool(found.get("longest_runs"))


def _live(env: dict[str, str], workdir: Path, count: int) -> dict[str, Any]:
    """Code server, daemon and webserver on the point's Dagster home: GraphQL timings and peak RSS of each."""
    from bench._util import proc_status_kb
    from koku_devtools.services import free_port

    grpc_port, web_port = free_port(), free_port()
    workspace = workdir / f"workspace-{count}.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server: {{host: 127.0.0.1, port: {grpc_port}, location_name: koku_dagster}}\n"
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["code_server"] = _start(
            f"code-server-{count}",
            [str(BIN / "dagster"), "api", "grpc", "-m", "koku_dagster.definitions", "-h", "127.0.0.1"]
            + ["-p", str(grpc_port), "--location-name", "koku_dagster"],
            env,
            workdir,
        )
        _wait_until(lambda: _port_open(grpc_port), "code server", procs)
        procs["daemon"] = _start(
            f"daemon-{count}", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env, workdir
        )
        web = [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(web_port)]
        procs["webserver"] = _start(f"webserver-{count}", web, env, workdir)
        _wait_until(lambda: _port_open(web_port), "webserver", procs)
        started = time.monotonic()
        figures = _time_queries(web_port, count)
        time.sleep(max(0.0, LIVE_SECONDS - (time.monotonic() - started)))
        _wait_until(lambda: _sensor_runs_done(env["DAGSTER_HOME"]), "the daemon's sensor runs", procs, LIVE_TIMEOUT)
        for name, proc in procs.items():
            figures[f"rss_{name}_mb"] = proc_status_kb(proc.pid, "VmHWM") / 1024
        figures["load_live"] = _load()
    finally:
        for proc in reversed(list(procs.values())):
            _stop(proc)
    figures["daemon_ticks"] = _daemon_ticks(env["DAGSTER_HOME"])
    return figures


# =============================================================================== projection and report

#: Figures fitted over the points and projected: (key, label, unit).
FIGURES = (
    ("absorb_s", "burst absorbed, ticks back to back", "s"),
    ("absorb_daemon_s", "burst absorbed, 10 s tick interval", "s"),
    ("longest_tick_s", "longest sensor tick", "s"),
    ("quiet_tick_s", "quiet sensor tick", "s"),
    ("polling_s", "polling schedule tick", "s"),
    ("polling_runs", "runs requested by the polling tick", "runs"),
    ("run_creation_s", "daemon: run creation, per run", "s"),
    ("polling_daemon_s", "polling tick in the daemon (evaluation + run creation)", "s"),
    ("partitions_per_asset", "partitions per asset", "keys"),
    ("graphql_first_s", "UI partition status, first answer", "s"),
    ("graphql_s", "UI partition status, later answers", "s"),
    ("rss_daemon_mb", "daemon peak RSS", "MB"),
    ("rss_code_server_mb", "code server peak RSS", "MB"),
    ("rss_webserver_mb", "webserver peak RSS", "MB"),
)


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def fit(xs: list[float], ys: list[float], target: float) -> dict[str, float]:
    """Least-squares fits of ``y = a + b·x`` and ``y = c·x^k`` over the points, both evaluated at ``target``."""
    a, b = _line(xs, ys)
    if min(ys) <= 0:
        return {"linear": a + b * target, "power": float("nan"), "k": float("nan")}
    log_c, k = _line([math.log(x) for x in xs], [math.log(y) for y in ys])
    return {"linear": a + b * target, "power": math.exp(log_c) * target**k, "k": k}


def report(points: list[dict[str, Any]]) -> str:
    from bench._util import table

    rows = [[label, unit] + [f"{p.get(key, float('nan')):,.2f}" for p in points] for key, label, unit in FIGURES]
    rows.append(["load average (1/5 min) during the burst", ""] + [p["load_absorb"] for p in points])
    out = table(["figure", "unit"] + [f"{p['count']:,} providers" for p in points], rows)
    if len(points) < 2:
        return out
    xs = [float(p["count"]) for p in points]
    projected = []
    for key, label, unit in FIGURES:
        result = fit(xs, [float(p[key]) for p in points], PROJECT_TO)
        projected.append([label, unit, f"{result['k']:.2f}", f"{result['linear']:,.1f}", f"{result['power']:,.1f}"])
    return (
        out
        + f"\n\nProjection to {PROJECT_TO:,} providers (least squares over the points above)\n\n"
        + table(["figure", "unit", "growth exponent k", "linear a+b·n", "power c·n^k"], projected)
    )


def _point(svc: Any, workdir: Path, count: int, topic: str, events: int) -> dict[str, Any]:
    env = _environment(workdir, svc, count, topic)
    _say(f"{count} providers: sensor burst, polling tick, partitions (load {_load()}) ...")
    cfg = {"count": count, "events": events, "env": env}
    result = {"count": count, "events": events, **_run_child(cfg, workdir / f"child-{count}.log")}
    _say(
        f"  absorbed {result['events_read']}/{events} events, {result['providers']} providers, "
        f"{result['partitions']} partitions in {len(result['ticks'])} ticks: {result['absorb_s']:.1f} s back to back, "
        f"{result['absorb_daemon_s']:.1f} s at the 10 s interval; longest tick {result['longest_tick_s']:.1f} s "
        f"(+{result['longest_partition_writes_s']:.1f} s partition writes); ticks {[t['s'] for t in result['ticks']]}"
    )
    _say(
        f"  polling tick {result['polling_s']:.2f} s ({result['polling_all_s']}), {result['polling_runs']} runs "
        f"requested; {result['partitions_per_asset']} partitions per asset ({result['months']} months) on "
        f"{result['provider_month_assets']}; load {result['load_polling']}"
    )
    result |= _live(env, workdir, count)
    _say(
        f"  UI partition status {result['graphql_first_s']:.2f} s first, {result['graphql_s']:.2f} s later "
        f"({result['graphql_bytes']:,} bytes, stats {result['graphql_stats']}); peak RSS daemon "
        f"{result['rss_daemon_mb']:.0f} MB, code server {result['rss_code_server_mb']:.0f} MB, webserver "
        f"{result['rss_webserver_mb']:.0f} MB; daemon ticks {result['daemon_ticks']}; load {result['load_live']}"
    )
    live_tick = result["daemon_ticks"]["platform_sources_sensor"]
    result["run_creation_s"] = live_tick["longest_s"] / max(1, live_tick["longest_runs"])
    # the schedule's tick in the daemon: its evaluation, then one run created per request
    result["polling_daemon_s"] = result["polling_s"] + result["polling_runs"] * result["run_creation_s"]
    _say(
        f"  daemon: {live_tick['longest_runs']} runs created in a {live_tick['longest_s']:.1f} s sensor tick "
        f"({result['run_creation_s']:.2f} s per run): the polling tick's {result['polling_runs']} runs would take "
        f"{result['polling_daemon_s']:.0f} s"
    )
    result["ok"] = _check(result)
    return result


def _check(result: dict[str, Any]) -> bool:
    """Every provider and partition there, every event read, no tick past its budget, polling within its goal."""
    problems = []
    if not result["providers"] == result["partitions"] == result["count"] or result["events_read"] != result["events"]:
        problems.append("providers, partitions or events missing")
    if result["longest_tick_s"] > PASS_BUDGET_SECONDS:
        problems.append(f"a sensor tick took {result['longest_tick_s']:.1f} s (budget {PASS_BUDGET_SECONDS:.0f} s)")
    if result["polling_s"] > POLLING_GOAL_SECONDS:
        problems.append(f"the polling tick took {result['polling_s']:.1f} s (goal {POLLING_GOAL_SECONDS:.0f} s)")
    if not result["graphql_ok"]:
        problems.append("the UI's answer does not list every provider")
    for problem in problems:
        _say(f"!!! {result['count']} providers: {problem}")
    return not problems


def run(options: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.sources_sync import Services, _workdir, create_sources, freeze_topics

    n = int(options.providers)
    points = sorted({p for p in SMALLER_POINTS if p < n} | {n})
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    with _workdir(options.keep) as workdir, Services(workdir, postgres=False) as svc:
        marks = create_sources(svc.api, n, set(points))
        _say(f"created {n} sources ({marks[n]} events) in {time.monotonic() - started:.0f} s; load {_load()}")
        topics = {count: f"bench.scale.{count}" for count in points}
        freeze_topics(svc.broker.bootstrap, svc.live_topic, marks[n], {t: marks[c] for c, t in topics.items()})
        for count in points:
            try:
                results.append(_point(svc, workdir, count, topics[count], marks[count]))
            except RuntimeError as exc:
                _say(f"!!! RUN FAILED: {exc}")
                results.append({"count": count, "ok": False})
    good = [r for r in results if "graphql_s" in r]
    if good:
        print(report(good), flush=True)
    _say(f"scale benchmark took {time.monotonic() - started:.0f} s")
    return results


def _child_main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("RESULT " + json.dumps(_child(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
