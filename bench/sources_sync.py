"""Benchmark: Platform Sources events -> providers, ours (``SourcesSync``) vs Koku's listener style.

Setup (not timed): a Tansu broker, the Platform Sources stand-in (own process, publishing to
Kafka) and an embedded PostgreSQL, all on loopback. ``N`` cost sources (aws, azure, gcp, ocp in
turn, spread over several orgs, each with its own credentials) are created through the stand-in's
public API, which publishes their events (4 per source, 2 for ocp: no authentication). Those events are then copied,
unchanged, to frozen topics that nothing else writes to: the full set, and prefixes for the
first N/2 sources and for the baseline subset. (The stand-in's live topic also receives an
``Application.update`` echo for every status PATCH, so it would grow from run to run.)

Every measured run happens in a fresh Python process (clean RSS, no warm caches), on a fresh
application database, with its own consumer group, so each run reads the same events from
offset 0:

- ``ours``: ``SourcesSync.run_once()`` in a loop (one call = one sensor tick) until the topic
  is consumed and no provider operation or status push is left.
- ``baseline``: Koku's listener, one message at a time: poll one message, parse it, apply it
  with a fresh, uncached ``PlatformView`` (all of its HTTP calls, synchronously, through
  ``requests`` without a shared session), save it in its own transaction, commit the offset
  synchronously, then run the due provider operations and push statuses, before the next
  message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NAME = "sources"

KINDS = ("aws", "azure", "gcp", "ocp")
ORGS = 10
PSK = "sources-psk"
API_PREFIX = "/api/sources/v3.1"
INTERNAL_PREFIX = "/internal/v2.0"
RUN_TIMEOUT = 900.0


# =============================================================================== child side
# A measured run: ``python -m bench.sources_sync <json config>``; prints one JSON line.


def _prepare_db(url: str) -> Any:
    from koku_dagster.db.engine import get_engine
    from koku_dagster.db.migrate import migrate

    migrate(url)
    return get_engine(url)


def _db_counts(engine: Any) -> dict[str, int]:
    import sqlalchemy as sa

    from koku_dagster.db.schema import provider, rejected_message, sources

    with engine.connect() as conn:
        count = lambda q: int(conn.execute(q).scalar() or 0)  # noqa: E731
        return {
            "providers": count(sa.select(sa.func.count()).select_from(provider)),
            "source_rows": count(sa.select(sa.func.count()).select_from(sources)),
            "linked": count(sa.select(sa.func.count()).select_from(sources).where(sources.c.koku_uuid.is_not(None))),
            "status_pending": count(
                sa.select(sa.func.count()).select_from(sources).where(sources.c.status_push_pending)
            ),
            "op_failed": count(sa.select(sa.func.count()).select_from(sources).where(sources.c.op_failed)),
            "rejected": count(sa.select(sa.func.count()).select_from(rejected_message)),
        }


def _child_ours(cfg: dict[str, Any]) -> dict[str, Any]:
    from koku_dagster.sources import sync as sync_mod
    from koku_dagster.sources.client import SourcesClient
    from koku_dagster.sources.sync import SourcesSync, SyncLimits

    from bench._util import RssSampler

    engine = _prepare_db(cfg["db_url"])
    client = SourcesClient(cfg["api"] + API_PREFIX, cfg["api"] + INTERNAL_PREFIX, PSK)
    # Timestamps of batch commits (process_batch returns once the batch's rows are committed).
    commits: list[tuple[float, int]] = []
    original = sync_mod.process_batch

    def timed_process_batch(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        commits.append((time.monotonic(), result.read))
        return result

    sync_mod.process_batch = timed_process_batch
    sync = SourcesSync(
        engine,
        client,
        bootstrap=cfg["bootstrap"],
        topic=cfg["topic"],
        local_roots=(),
        purge_data=lambda _uuid: None,
        group_id=cfg["group"],
        limits=SyncLimits(),
    )
    expected = cfg["events"]
    ticks = read = created = api_calls = pushes = 0
    tick_log: list[dict[str, Any]] = []
    timed_out = False
    with RssSampler() as rss:
        t0 = time.monotonic()
        while True:
            report = sync.run_once()
            ticks += 1
            read += report.batch.read
            api_calls += report.batch.api_calls
            created += len(report.created)
            pushes += report.statuses.sent
            tick_log.append({"s": round(report.seconds, 3), "read": report.batch.read,
                             "api_calls": report.batch.api_calls, "ops": len(report.operations),
                             "pushed": report.statuses.sent})
            busy = report.batch.read or report.operations or report.statuses.sent or report.statuses.failed
            if read >= expected and not busy:
                break
            if time.monotonic() - t0 > cfg["timeout"]:
                timed_out = True
                break
        seconds = time.monotonic() - t0
    events_at = None
    seen = 0
    for stamp, n in commits:
        seen += n
        if seen >= expected:
            events_at = stamp - t0
            break
    return {
        "seconds": seconds,
        "events_seconds": events_at if events_at is not None else seconds,
        "read": read,
        "created": created,
        "ticks": ticks,
        "tick_log": tick_log,
        "api_calls_in_batches": api_calls,
        "status_pushes": pushes,
        "rss_start_mb": rss.start_kb / 1024,
        "rss_growth_mb": rss.growth_mb,
        "timed_out": timed_out,
        **_db_counts(engine),
    }


def _unpooled_client(api: str) -> Any:
    """A SourcesClient whose every call goes through ``requests.request`` (no shared session)."""
    import requests

    from koku_dagster.sources.client import SourcesClient
    from koku_dagster.sources.errors import SourcesApiError

    class UnpooledSourcesClient(SourcesClient):
        def _request(self, method, path, tenant, *, internal=False, params=None, body=None):  # type: ignore[no-untyped-def]
            url = (self.internal_base if internal else self.api_base) + "/" + path
            try:
                return requests.request(
                    method, url, headers=self._headers(tenant), params=params, json=body, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise SourcesApiError(f"{method} {path}: {type(exc).__name__}") from None

    return UnpooledSourcesClient(api + API_PREFIX, api + INTERNAL_PREFIX, PSK)


def _child_baseline(cfg: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    from koku_dagster.db.types import utcnow
    from koku_dagster.devtools.services import kafka_consumer_config
    from koku_dagster.sources.errors import PoisonMessage, SourceNotFound
    from koku_dagster.sources.events import MessagePosition, parse_message
    from koku_dagster.sources.platform import PlatformView
    from koku_dagster.sources.processor import apply_event
    from koku_dagster.sources.providers import ProviderOperations
    from koku_dagster.sources.status_push import push_pending_statuses
    from koku_dagster.sources.store import load_record, save_record

    from bench._util import RssSampler

    engine = _prepare_db(cfg["db_url"])
    client = _unpooled_client(cfg["api"])
    operations = ProviderOperations(engine, (), lambda _uuid: None)
    consumer = Consumer(kafka_consumer_config(cfg["bootstrap"], cfg["group"]))
    topic = cfg["topic"]
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    expected = cfg["events"]
    processed = created = poison = gone = pushes = 0
    timed_out = False
    with RssSampler() as rss:
        t0 = time.monotonic()
        # Koku's listener looks the cost-management application type up once, at start-up.
        cost_type_id = client.cost_management_type_id()
        events_at = 0.0
        while processed < expected:
            if time.monotonic() - t0 > cfg["timeout"]:
                timed_out = True
                break
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            position = MessagePosition(msg.topic(), msg.partition(), msg.offset())
            try:
                event = parse_message(position, msg.headers(), msg.value())
            except PoisonMessage:
                event, poison = None, poison + 1
            if event is not None:
                platform = PlatformView(client, cost_type_id)  # fresh: nothing cached between messages
                with engine.begin() as conn:  # Koku: transaction.atomic() around process()
                    before = load_record(conn, event.source_id)
                    try:
                        outcome = apply_event(before, event, platform)
                        save_record(conn, before, outcome.record)
                    except SourceNotFound:
                        gone += 1
            consumer.commit(message=msg, asynchronous=False)
            processed += 1
            events_at = time.monotonic() - t0
            # Koku: post_save signal queues the provider operation, execute_process_queue()
            # runs it in the listener thread; then the status goes back to Platform Sources.
            for op, record in operations.due(utcnow(), 5000):
                result = operations.run(op, record, utcnow())
                created += int(result.operation == "create" and result.outcome == "done")
            pushes += push_pending_statuses(engine, client, cost_type_id, limit=5000, workers=1).sent
        seconds = time.monotonic() - t0
    consumer.close()
    return {
        "seconds": seconds,
        "events_seconds": events_at or seconds,
        "read": processed,
        "created": created,
        "poison": poison,
        "gone": gone,
        "status_pushes": pushes,
        "rss_start_mb": rss.start_kb / 1024,
        "rss_growth_mb": rss.growth_mb,
        "timed_out": timed_out,
        **_db_counts(engine),
    }


def _child_main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    cfg = json.loads(argv[0])
    result = _child_ours(cfg) if cfg["approach"] == "ours" else _child_baseline(cfg)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# =============================================================================== parent side


@dataclass
class Row:
    benchmark: str
    backend: str
    approach: str
    sources: int
    events: int
    seconds: float
    events_seconds: float
    providers: int
    rss_growth_mb: float
    ok: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.events_seconds if self.events_seconds > 0 else 0.0

    @property
    def providers_per_s(self) -> float:
        return self.providers / self.seconds if self.seconds > 0 else 0.0


def _say(text: str) -> None:
    print(f"[bench:{NAME}] {text}", file=sys.stderr, flush=True)


class Services:
    """Broker, stand-in process and PostgreSQL for one benchmark session (not timed)."""

    def __init__(self, workdir: Path, latency_ms: float = 0.0) -> None:
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.broker: Any = None
        self.pg: Any = None
        self.standin: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.live_topic = "bench.platform.sources.live"

    def __enter__(self) -> Services:
        import requests

        from koku_dagster.devtools.services import EmbeddedPostgres, TansuBroker, create_topics, free_port

        self.broker = TansuBroker(workdir=self.workdir / "tansu").start()
        create_topics(self.broker.bootstrap, [self.live_topic])
        port = free_port()
        log = open(self.workdir / "standin.log", "ab")  # noqa: SIM115 - closed with the process
        self.standin = subprocess.Popen(
            [sys.executable, "-m", "bench.standin", "--port", str(port), "--kafka", self.broker.bootstrap,
             "--topic", self.live_topic, "--psk", PSK],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        self.api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.api + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if self.standin.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-in did not start; see {self.workdir / 'standin.log'}")
            time.sleep(0.05)
        self.pg = EmbeddedPostgres(self.workdir / "pg").start()
        return self

    def set_latency(self, ms: float) -> None:
        import requests

        requests.post(f"{self.api}/_bench/latency", params={"ms": str(ms)}, timeout=5).raise_for_status()

    def __exit__(self, *exc: object) -> None:
        if self.standin is not None and self.standin.poll() is None:
            self.standin.terminate()
            try:
                self.standin.wait(10)
            except subprocess.TimeoutExpired:
                self.standin.kill()
                self.standin.wait(5)
        if self.pg is not None:
            self.pg.stop()
        if self.broker is not None:
            self.broker.stop()


def create_sources(api: str, n: int, checkpoints: set[int]) -> dict[int, int]:
    """Create ``n`` cost sources through the stand-in's public API.

    Returns, for each count in ``checkpoints``, how many events the first that many sources
    published (creation is sequential and every write is flushed to Kafka before it answers,
    so those events are exactly the head of the topic).
    """
    import requests

    from koku_dagster.devtools.platform_sources import StandInAdmin

    admins = [StandInAdmin(api, org_id=f"{7100001 + j}", account=f"{20001 + j}", psk=PSK) for j in range(ORGS)]
    marks: dict[int, int] = {}
    try:
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            admin = admins[(i // len(KINDS)) % ORGS]
            details: dict[str, Any]
            if kind == "aws":
                details = {"role_arn": f"arn:aws:iam::{100000000000 + i}:role/CostManagement",
                           "external_id": f"ext-{i}", "bucket": f"cur-bucket-{i}"}
            elif kind == "azure":
                details = {"client_id": str(uuid.UUID(int=i + 1)), "client_secret": f"secret-{i}",
                           "subscription_id": str(uuid.UUID(int=10**9 + i)), "resource_group": f"rg-{i}",
                           "storage_account": f"storage{i}"}
            elif kind == "gcp":
                details = {"project_id": f"bench-project-{i}", "dataset": f"billing_{i}"}
            else:
                details = {"cluster_id": f"bench-cluster-{i}"}
            admin.create_cost_source(kind, f"bench source {i:05d} ({kind})", **details)
            if i + 1 in checkpoints:
                marks[i + 1] = len(requests.get(f"{api}/_standin/events", timeout=60).json())
            if (i + 1) % 500 == 0:
                _say(f"  {i + 1}/{n} sources created")
    finally:
        for admin in admins:
            admin.close()
    return marks


def freeze_topics(bootstrap: str, source: str, total: int, targets: dict[str, int]) -> None:
    """Copy the first ``targets[t]`` of the ``total`` messages of ``source`` to each topic ``t``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from koku_dagster.devtools.services import create_topics, kafka_consumer_config

    create_topics(bootstrap, list(targets))
    consumer = Consumer(kafka_consumer_config(bootstrap, f"bench-copy-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(source, 0, OFFSET_BEGINNING)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    boundaries = {count for count in targets.values() if count < total}
    copied = 0
    deadline = time.monotonic() + 120
    try:
        while copied < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {copied} of {total} events found on {source}")
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error() is not None or copied >= total:
                    continue
                if copied in boundaries and dict(msg.headers() or []).get("event_type") != b"Source.create":
                    raise RuntimeError(f"event {copied} of {source} does not start a source: prefixes would split one")
                for topic, count in targets.items():
                    if copied < count:
                        producer.produce(topic, key=msg.key(), value=msg.value(), headers=msg.headers())
                copied += 1
                producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("events not copied in time")
    finally:
        consumer.close()


def _run_child(cfg: dict[str, Any], log_path: Path) -> dict[str, Any]:
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.sources_sync", json.dumps(cfg)],
            stdout=subprocess.PIPE, stderr=log, cwd=Path(__file__).resolve().parents[1], check=False,
        )
    lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"run {cfg['approach']}/{cfg['topic']} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return json.loads(lines[-1][len("RESULT "):])


def _db_url(svc: Services, backend: str, tag: str) -> str:
    if backend == "sqlite":
        path = svc.workdir / "db" / f"{tag}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return svc.pg.create_database(tag, replace=True)


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="koku-bench-"))
    try:
        yield path
    finally:
        if not keep:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            _say(f"work dir kept: {path}")


def run(options: argparse.Namespace) -> list[Row]:
    n = int(options.sources)
    half = max(1, n // 2)
    base_n = min(n, int(options.baseline_sources)) if options.baseline_sources else n
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]
    rows: list[Row] = []
    with _workdir(options.keep) as workdir, Services(workdir) as svc:
        _say(f"work dir {workdir}; broker {svc.broker.bootstrap}; stand-in {svc.api}")
        t = time.monotonic()
        marks = create_sources(svc.api, n, {n, half, base_n})
        total_events = marks[n]
        _say(f"created {n} sources ({total_events} events) in {time.monotonic() - t:.1f} s")
        topics = {f"bench.sources.{k}": (k, marks[k]) for k in sorted({n, half, base_n})}
        freeze_topics(svc.broker.bootstrap, svc.live_topic, total_events, {t: e for t, (_, e) in topics.items()})
        if options.latency_ms:
            svc.set_latency(options.latency_ms)
            _say(f"stand-in answers API calls after +{options.latency_ms:g} ms")

        plan: list[tuple[str, str, int]] = []
        for backend in backends:
            plan.append((backend, "ours", n))
            if half != n and not options.no_memory_check:
                plan.append((backend, "ours", half))
            plan.append((backend, "baseline", base_n))
        for i, (backend, approach, count) in enumerate(plan):
            topic = f"bench.sources.{count}"
            sources_n, events = topics[topic]
            tag = f"bench_{i}_{backend}_{approach}_{count}"
            cfg = {
                "approach": approach, "db_url": _db_url(svc, backend, tag), "api": svc.api,
                "bootstrap": svc.broker.bootstrap, "topic": topic, "events": events,
                "group": f"bench-{tag}-{uuid.uuid4().hex[:8]}", "timeout": RUN_TIMEOUT,
            }
            _say(f"run {i + 1}/{len(plan)}: {backend} {approach}, {sources_n} sources, {events} events ...")
            res = _run_child(cfg, workdir / f"{tag}.log")
            ok = res["providers"] == sources_n and res["read"] == events and not res["timed_out"]
            note = ""
            if approach == "baseline" and count != n:
                note = f"first {count} sources; rates extrapolate"
            if approach == "ours" and count != n:
                note = "memory check"
            row = Row(NAME, backend, approach, sources_n, events, res["seconds"], res["events_seconds"],
                      res["providers"], res["rss_growth_mb"], ok, note, res)
            rows.append(row)
            _say(f"  {row.seconds:.1f} s, {row.events_per_s:.0f} events/s, {row.providers_per_s:.1f} providers/s, "
                 f"RSS +{row.rss_growth_mb:.1f} MB, providers {row.providers}/{sources_n}")
            if not ok:
                _say("!" * 70)
                _say(f"!!! MISMATCH: {row.providers} providers for {sources_n} sources, read {res['read']} of "
                     f"{events} events, timed out: {res['timed_out']} (details: {json.dumps(res)})")
                _say("!" * 70)
    return rows


def report(rows: list[Row]) -> str:
    from bench._util import table

    baseline = {r.backend: r for r in rows if r.approach == "baseline"}
    out = []
    for r in rows:
        b = baseline.get(r.backend)
        ratio = ""
        if r.approach == "ours" and b is not None and b.events_per_s and b.providers_per_s:
            ratio = f"{r.events_per_s / b.events_per_s:.1f}x / {r.providers_per_s / b.providers_per_s:.1f}x"
        out.append([
            r.backend, r.approach, r.sources, r.events, f"{r.seconds:.1f}", f"{r.events_per_s:.0f}",
            f"{r.providers_per_s:.1f}", f"{r.rss_growth_mb:.1f}", ratio, "ok" if r.ok else "MISMATCH", r.note,
        ])
    return table(
        ["backend", "approach", "sources", "events", "seconds", "events/s", "providers/s",
         "peak RSS growth MB", "ours/baseline (events/s / providers/s)", "check", "note"],
        out,
    )


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
