"""Kafka TLS/SASL settings: from the environment to every consumer and producer, the password kept out of sight.

Tansu 0.6 (the test broker) cannot serve TLS or SASL itself: its ``--cert`` and ``--key`` options refuse to be
given together, and with ``--authentication`` it refuses every user, because users made with ``tansu user
create`` are not kept by its memory or S3 storage (the SCRAM exchange ends in ``unknown-user``). So TLS is
tested for real through a TLS-terminating proxy in front of Tansu (Tansu advertises the proxy's address), and
SASL through the librdkafka configuration the resource builds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from koku_dagster.definitions import build_resources
from koku_dagster.infra.kafka import BatchConsumer, consumer_config, producer_config
from koku_dagster.infra.settings import KafkaSecurity, settings_from_env
from koku_dagster.resources import ApplicationDatabase, KafkaResource
from koku_dagster.sensors.ocp_upload import ocp_upload_sensor
from koku_dagster.sensors.platform_sources import platform_sources_sensor
from koku_dagster.uploads.validation import produce_validations
from koku_devtools.services import LocalTls, TansuBroker
from koku_devtools.services.processes import LOOPBACK, free_port
from tests.conftest import Harness
from tests.resources import ingestion_resource, kafka_resource, object_store_resource, platform_sources_resource

PASSWORD = "kafka-pw-5f1c9e"


def test_resource_builds_sasl_ssl_client_config_without_showing_the_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    resource = kafka_resource(
        "broker:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="koku",
        sasl_password=PASSWORD,
        ssl_ca_location=str(ca),
    )
    security = resource.security()
    wanted = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "koku",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
    }
    assert consumer_config(resource.bootstrap_servers, "hccm-sources", security).items() >= wanted.items()
    assert producer_config(resource.bootstrap_servers, security, acks="all").items() >= wanted.items()
    for text in (repr(resource), str(resource), repr(security), str(security)):
        assert PASSWORD not in text
    assert "koku" in repr(resource)  # the rest is shown


def test_plaintext_by_default() -> None:
    assert kafka_resource("b:9092").security() == KafkaSecurity()
    assert "security.protocol" not in consumer_config("b:9092", "g", kafka_resource("b:9092").security())


def _kafka_env(tmp_path: Path) -> dict[str, str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("ca")
    return {
        "KOKU_HOME": str(tmp_path),
        "KOKU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KOKU_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KOKU_KAFKA_SASL_USERNAME": "koku",
        "KOKU_KAFKA_SASL_PASSWORD": PASSWORD,
        "KOKU_KAFKA_SSL_CA_LOCATION": str(ca),
    }


def test_password_is_an_env_var_in_the_code_location_and_reaches_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    env = _kafka_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(settings_from_env(env))
    seen: list[KafkaSecurity] = []

    @dg.asset
    def uses_kafka(kafka: KafkaResource) -> None:
        seen.append(kafka.security())
        dg.get_dagster_logger().info(f"kafka resource: {kafka!r}")

    defs = dg.Definitions(assets=[uses_kafka], resources={"kafka": resources["kafka"]})
    with dg.instance_for_test() as instance:  # loading needs a live instance
        snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
        assert "KOKU_KAFKA_SASL_PASSWORD" in snapshot and PASSWORD not in snapshot  # what the UI shows
        result = dg.materialize([uses_kafka], resources={"kafka": resources["kafka"]}, instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and PASSWORD not in json.dumps(run.run_config)
        logs = [str(entry) for entry in instance.all_logs(result.run_id)]
        assert logs and not any(PASSWORD in line for line in logs)
    assert seen[0].client_config()["sasl.password"] == PASSWORD
    assert seen[0].client_config()["security.protocol"] == "SASL_SSL"


# --------------------------------------------------------------------------- TLS against a real broker


class _TlsProxy(socketserver.ThreadingTCPServer):
    """Terminates TLS and forwards the bytes to a plaintext upstream port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, upstream: int, context: ssl.SSLContext) -> None:
        self.upstream, self.context = upstream, context
        super().__init__((LOOPBACK, port), _ProxyHandler)


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _TlsProxy

    def handle(self) -> None:
        try:
            client = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not speak TLS
        with client, socket.create_connection((LOOPBACK, self.server.upstream)) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join(5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _AdvertisingTansu(TansuBroker):
    """Tansu telling clients to come back through the TLS proxy."""

    def __init__(self, workdir: Path, advertised_port: int) -> None:
        super().__init__(workdir=workdir)
        self.advertised_port = advertised_port

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--advertised-listener-url") + 1] = f"tcp://{LOOPBACK}:{self.advertised_port}"
        return command


@dataclass
class TlsKafka:
    bootstrap: str
    security: KafkaSecurity

    def client_config(self) -> dict[str, object]:
        return {**self.security.client_config(), "bootstrap.servers": self.bootstrap}

    def create_topics(self, *names: str) -> None:
        admin = AdminClient(self.client_config())  # kept alive until the futures are done
        for future in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
            future.result(15)

    def produce(self, topic: str, value: bytes, headers: dict[str, bytes]) -> None:
        producer = Producer(producer_config(self.bootstrap, self.security))
        producer.produce(topic, value=value, headers=list(headers.items()))
        assert producer.flush(15) == 0


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory, local_tls: LocalTls) -> Iterator[TlsKafka]:
    proxy_port = free_port()
    with _AdvertisingTansu(tmp_path_factory.mktemp("tansu-tls"), proxy_port) as broker:
        proxy = _TlsProxy(proxy_port, broker.port, local_tls.server_context())
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            security = KafkaSecurity(protocol="SSL", ssl_ca_location=str(local_tls.ca_path))
            yield TlsKafka(f"{LOOPBACK}:{proxy_port}", security)
        finally:
            proxy.shutdown()
            proxy.server_close()


def _tls_resource(tls: TlsKafka, **topics: str) -> KafkaResource:
    return kafka_resource(
        tls.bootstrap, security_protocol="SSL", ssl_ca_location=tls.security.ssl_ca_location, **topics
    )


def test_sources_sensor_reads_through_tls(harness: Harness, tls_kafka: TlsKafka) -> None:
    topic = f"tls-{harness.topic}"
    tls_kafka.create_topics(topic)
    tls_kafka.produce(topic, b"{not json", {"event_type": b"Application.create"})
    resources = {
        "app_db": ApplicationDatabase(database_url=harness.url),
        "platform_sources": platform_sources_resource(api_url=harness.standin.url, psk="sources-psk"),
        "kafka": _tls_resource(tls_kafka, sources_topic=topic),
        "object_store": object_store_resource(url=harness.store.url, local_bucket_roots=str(harness.buckets)),
        "ingestion": ingestion_resource(str(harness.store.local_root)),
    }
    with dg.instance_for_test() as instance:
        result = platform_sources_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SensorResult)
    meta = result.asset_events[0].metadata
    assert (meta["events_read"].value, meta["events_rejected"].value) == (1, 1)  # read over TLS, refused as unparseable
    assert harness.table("sources_rejected_message", "id")[0]["topic"] == topic


def test_upload_intake_and_validation_results_go_through_tls(db_url: str, tls_kafka: TlsKafka) -> None:
    upload_topic, validation_topic = f"upload-{abs(hash(db_url))}", f"validation-{abs(hash(db_url))}"
    tls_kafka.create_topics(upload_topic, validation_topic)
    tls_kafka.produce(upload_topic, b"{}", {"service": b"advisor"})
    resources = {
        "app_db": ApplicationDatabase(database_url=db_url),
        "kafka": _tls_resource(tls_kafka, upload_topic=upload_topic, validation_topic=validation_topic),
    }
    with dg.instance_for_test() as instance:
        result = ocp_upload_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SensorResult)
    meta = result.asset_events[0].metadata
    assert meta["messages_read"].value == 1 and meta["ignored_services"].value == {"advisor": 1}

    delivered = produce_validations(
        tls_kafka.bootstrap, validation_topic, [("req-1", "success")], security=tls_kafka.security
    )
    assert delivered == {"req-1"}
    with BatchConsumer(tls_kafka.bootstrap, validation_topic, "reader", tls_kafka.security) as consumer:
        messages, _ = consumer.read(max_messages=10, budget_seconds=10)
    assert [json.loads(m.value or b"") for m in messages] == [{"request_id": "req-1", "validation": "success"}]
