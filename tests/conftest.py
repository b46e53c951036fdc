"""Shared harness: a real Tansu broker, embedded PostgreSQL, and the stand-in Platform Sources."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from koku_dagster.infra.db.engine import dispose_engine, get_engine
from koku_dagster.infra.db.migrate import migrate
from koku_dagster.infra.db.schema import metadata
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.sync import SourcesSync, SyncLimits, SyncReport
from koku_devtools.platform_sources import StandInAdmin, StandInServer
from koku_devtools.platform_sources.admin import identity_header
from koku_devtools.services import (
    AzureStandIn,
    Azurite,
    EmbeddedPostgres,
    LocalBigQuery,
    LocalTls,
    TansuBroker,
    create_topics,
    make_local_tls,
)

_counter = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    with TansuBroker(workdir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated application database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'koku.db'}"
    else:
        server: EmbeddedPostgres = request.getfixturevalue("pg_server")
        url = server.create_database(f"koku_test_{next(_counter)}_{id(request) % 100000}", replace=True)
    migrate(url)
    yield url
    dispose_engine(url)


@dataclass
class Harness:
    """One isolated world: topic, stand-in, database, object store and local bucket root."""

    url: str
    engine: sa.Engine
    broker: TansuBroker
    topic: str
    standin: StandInServer
    admin: StandInAdmin
    client: SourcesClient
    store: ObjectStore
    buckets: Path

    def sync(self, **limits: Any) -> SourcesSync:
        return SourcesSync(
            self.engine,
            self.client,
            bootstrap=self.broker.bootstrap,
            topic=self.topic,
            local_roots=(self.buckets,),
            purge_data=self.store.delete_provider_data,
            limits=SyncLimits(**limits) if limits else SyncLimits(read_budget_seconds=3.0),
        )

    def run(self, passes: int = 1, **limits: Any) -> list[SyncReport]:
        sync = self.sync(**limits)
        return [sync.run_once() for _ in range(passes)]

    def settle(self, max_passes: int = 6) -> list[SyncReport]:
        """Run passes until one reads nothing and does nothing; each pass is 10 minutes later,
        so retry back-offs have passed."""
        reports = []
        sync = self.sync()
        for i in range(max_passes):
            report = sync.run_once(now=utcnow() + timedelta(minutes=10 * i))
            reports.append(report)
            idle = not report.batch.read and not report.operations and not report.statuses.sent
            if idle and report.api_available and not report.batch.retrying:
                break
        return reports

    def produce(
        self, event_type: str | None, body: Any, headers: dict[str, bytes] | None = None, raw: bytes | None = None
    ) -> None:
        """Put a hand-made message on the topic (for malformed or out-of-order events)."""
        hdrs = dict(headers if headers is not None else default_headers())
        if event_type is not None:
            hdrs["event_type"] = event_type.encode()
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "log_level": 2})
        value = raw if raw is not None else json.dumps(body).encode()
        producer.produce(self.topic, value=value, headers=list(hdrs.items()))
        producer.flush(10)

    def table(self, name: str, order_by: str) -> list[dict[str, Any]]:
        table = metadata.tables[name]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c[order_by])).mappings().all()
        return [dict(r) for r in rows]


def default_headers(org: str = "1234567", account: str = "10001") -> dict[str, bytes]:
    return {
        "x-rh-sources-account-number": account.encode(),
        "x-rh-sources-org-id": org.encode(),
        "x-rh-identity": identity_header(org, account).encode(),
    }


@pytest.fixture
def harness(db_url: str, kafka_broker: TansuBroker, tmp_path: Path) -> Iterator[Harness]:
    topic = f"sources-{next(_counter)}-{tmp_path.name}"
    create_topics(kafka_broker.bootstrap, [topic])
    standin = StandInServer(kafka_bootstrap=kafka_broker.bootstrap, topic=topic).start()
    client = SourcesClient(standin.url + "/api/sources/v1.0", standin.url + "/internal/v1.0", "sources-psk")
    buckets = tmp_path / "buckets"
    buckets.mkdir()
    h = Harness(
        url=db_url,
        engine=get_engine(db_url),
        broker=kafka_broker,
        topic=topic,
        standin=standin,
        admin=StandInAdmin(standin.url),
        client=client,
        store=ObjectStore(f"file://{tmp_path / 'store'}"),
        buckets=buckets,
    )
    logging.getLogger("koku_dagster").setLevel(logging.DEBUG)
    try:
        yield h
    finally:
        client.close()
        h.admin.close()
        standin.stop()


# --------------------------------------------------------------------------- cloud emulators (tests/test_emulators.py)


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    """One CA and server certificate shared by Azurite and the Azure stand-in (trust ``ca_path``)."""
    return make_local_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory, local_tls: LocalTls) -> Iterator[Azurite]:
    """Azurite Blob Storage over HTTPS with ``--oauth basic`` (installed into the cache on first use)."""
    with Azurite(workdir=tmp_path_factory.mktemp("azurite"), tls=local_tls) as server:
        yield server


@pytest.fixture(scope="session")
def azure_standin(local_tls: LocalTls) -> Iterator[AzureStandIn]:
    """Entra ID token endpoint and Cost Management exports API (authority host and management URL)."""
    with AzureStandIn(local_tls) as server:
        yield server


@pytest.fixture(scope="session")
def local_bigquery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBigQuery]:
    """The BigQuery emulator (local-bigquery, installed into the cache on first use)."""
    with LocalBigQuery(workdir=tmp_path_factory.mktemp("bigquery")) as server:
        yield server
