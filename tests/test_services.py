"""Real-server tests for :mod:`koku_devtools.services` (Tansu, PostgreSQL, SeaweedFS, moto)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from koku_devtools.services import (
    EmbeddedPostgres,
    MotoServer,
    SeaweedS3,
    ServiceError,
    TansuBroker,
    create_topics,
    free_port,
    kafka_consumer_config,
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _poll_values(consumer: Consumer, count: int, timeout: float = 15.0) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    return values


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    with TansuBroker(workdir=tmp_path_factory.mktemp("tansu")) as b:
        yield b


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data") as pg:
        yield pg


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(workdir=tmp_path_factory.mktemp("seaweed")) as s3:
        yield s3


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(workdir=tmp_path_factory.mktemp("moto")) as m:
        yield m


# --------------------------------------------------------------------------- generic


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- Tansu


@pytest.mark.kafka
def test_tansu_produce_consume_and_commit_roundtrip(broker: TansuBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(6):
        producer.produce(topic, value=f"m{i}".encode(), partition=i % 2)
    assert producer.flush(10) == 0

    consumer = Consumer(kafka_consumer_config(broker.bootstrap, "g-assign"))
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    values = _poll_values(consumer, 6)
    assert sorted(values) == [f"m{i}".encode() for i in range(6)]
    consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 2)], asynchronous=False)
    consumer.close()

    fresh = Consumer(kafka_consumer_config(broker.bootstrap, "g-assign"))
    committed = fresh.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    fresh.close()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 3), (1, 2)]


@pytest.mark.kafka
def test_tansu_group_subscribe_with_project_config(broker: TansuBroker) -> None:
    topic = f"g-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [topic])
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(3):
        producer.produce(topic, value=b"x%d" % i)
    producer.flush(10)

    config = kafka_consumer_config(broker.bootstrap, "g-subscribe", {"client.id": "koku-test"})
    assert config["session.timeout.ms"] == 6000 and config["enable.auto.commit"] is False
    assert config["client.id"] == "koku-test"
    consumer = Consumer(config)
    consumer.subscribe([topic])
    started = time.monotonic()
    assert _poll_values(consumer, 3, timeout=20) == [b"x0", b"x1", b"x2"]
    assert time.monotonic() - started < 15  # join ~3 s with a 6 s session timeout
    consumer.commit(asynchronous=False)
    consumer.close()

    fresh = Consumer(kafka_consumer_config(broker.bootstrap, "g-subscribe"))
    assert fresh.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3
    fresh.close()


@pytest.mark.kafka
def test_create_topics_is_idempotent(broker: TansuBroker) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [name], partitions=3)
    create_topics(broker.bootstrap, [name], partitions=3)
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 3


@pytest.mark.kafka
def test_tansu_restart_on_same_port_loses_memory_storage(tmp_path: Path) -> None:
    broker = TansuBroker(workdir=tmp_path).start()
    create_topics(broker.bootstrap, ["lost"])
    port, pid = broker.port, broker.pid
    assert pid is not None
    producer = Producer({"bootstrap.servers": broker.bootstrap})  # keeps a connection open
    producer.produce("lost", b"v")
    producer.flush(10)
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 3
    assert not _pid_alive(pid) and not broker.running

    with TansuBroker(port=port, workdir=tmp_path) as again:
        topics = AdminClient({"bootstrap.servers": again.bootstrap}).list_topics(timeout=10).topics
        assert "lost" not in topics
    assert (tmp_path / "tansu.log").read_text().count("listening on") == 2
    del producer


@pytest.mark.kafka
def test_start_failure_reports_process_output(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(ServiceError, match="Address in use"):
            TansuBroker(port=busy, workdir=tmp_path).start(timeout=10)


@pytest.mark.kafka
def test_processes_do_not_outlive_python(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from koku_devtools.services import TansuBroker\n"
        "b = TansuBroker(workdir=Path(sys.argv[1])).start()\n"
        "print(b.pid, flush=True)\n"  # exits without stop(): the atexit hook must clean up
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    assert not _pid_alive(pid)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_url_and_isolated_databases(postgres: EmbeddedPostgres) -> None:
    assert postgres.url.startswith("postgresql+psycopg2://postgres@/postgres?host=")
    url_a = postgres.create_database("svc_a")
    url_b = postgres.create_database("svc_b", replace=True)
    assert postgres.create_database("svc_a") == url_a  # existing database is kept

    engine_a = sa.create_engine(url_a)
    with engine_a.begin() as conn:
        conn.execute(sa.text("create table t (id int primary key, name text)"))
        conn.execute(sa.text("insert into t values (1, 'aws'), (2, 'ocp')"))
    with engine_a.connect() as conn:
        rows = conn.execute(sa.text("select id, name from t order by id")).all()
        version = conn.execute(sa.text("show server_version")).scalar_one()
    engine_a.dispose()
    assert [tuple(r) for r in rows] == [(1, "aws"), (2, "ocp")]
    assert int(str(version).split(".")[0]) >= 16

    engine_b = sa.create_engine(url_b)
    with engine_b.connect() as conn:
        exists = conn.execute(sa.text("select to_regclass('public.t')")).scalar()
    engine_b.dispose()
    assert exists is None

    postgres.drop_database("svc_b")
    with pytest.raises(ValueError):
        postgres.create_database("bad name; drop")


# --------------------------------------------------------------------------- S3


def test_seaweed_put_get_and_auth(seaweed: SeaweedS3) -> None:
    s3 = seaweed.client()
    s3.create_bucket(Bucket="koku-report")
    s3.put_object(Bucket="koku-report", Key="cur/2026/manifest.json", Body=b'{"ok": true}')
    body = s3.get_object(Bucket="koku-report", Key="cur/2026/manifest.json")["Body"].read()
    assert body == b'{"ok": true}'
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="koku-report")["Contents"]]
    assert keys == ["cur/2026/manifest.json"]

    wrong = boto3.client("s3", **{**seaweed.client_kwargs(), "aws_secret_access_key": "wrong"})
    with pytest.raises(ClientError):
        wrong.list_buckets()


def test_moto_s3_and_sts_assume_role(moto: MotoServer) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="moto-bucket")
    s3.put_object(Bucket="moto-bucket", Key="a.csv", Body=b"x,y\n1,2\n")
    assert s3.get_object(Bucket="moto-bucket", Key="a.csv")["Body"].read() == b"x,y\n1,2\n"

    role_arn = "arn:aws:iam::123456789012:role/koku-cost"
    creds = moto.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="koku-session")
    assert creds["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert creds["AssumedRoleUser"]["Arn"].endswith("assumed-role/koku-cost/koku-session")

    moto.reset()
    assert moto.client("s3").list_buckets()["Buckets"] == []
