"""Bounded batch reads from Kafka with offsets committed by the caller (no Dagster here).

Each read assigns the topic's partitions at the consumer group's committed offsets (no group
join, so a read starts at once) and stops at the end of every partition, a message cap or a
time budget, whichever comes first. Offsets are committed explicitly, after the caller's
effects are durable, so standard lag tools show the backlog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from koku_dagster.infra.settings import KafkaSecurity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessagePosition:
    """Where a message sits: topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class RawMessage:
    """A message as read, before any parsing."""

    position: MessagePosition
    headers: list[tuple[str, bytes | None]] | None
    value: bytes | None


def consumer_config(bootstrap: str, group_id: str, security: KafkaSecurity | None = None) -> dict[str, object]:
    return {
        **(security or KafkaSecurity()).client_config(),
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 50,
        "fetch.error.backoff.ms": 50,
        "log_level": 3,
    }


def producer_config(bootstrap: str, security: KafkaSecurity | None = None, **extra: object) -> dict[str, object]:
    """Producer settings with the deployment's TLS/SASL settings."""
    return {**(security or KafkaSecurity()).client_config(), "bootstrap.servers": bootstrap, **extra}


class BatchConsumer:
    """One short-lived consumer for one topic and group; use as a context manager."""

    def __init__(self, bootstrap: str, topic: str, group_id: str, security: KafkaSecurity | None = None) -> None:
        self.topic = topic
        self.group_id = group_id
        self._consumer = Consumer(consumer_config(bootstrap, group_id, security))

    def __enter__(self) -> BatchConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def partitions(self, timeout: float = 5.0) -> list[int]:
        metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            return []
        return sorted(topic.partitions)

    def committed(self, partitions: Iterable[int], timeout: float = 10.0) -> dict[int, int]:
        """Committed next offset per partition (-1 when the group has none)."""
        tps = self._consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=timeout)
        return {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in tps}

    def read(
        self, *, max_messages: int, budget_seconds: float, skip_partitions: Iterable[int] = ()
    ) -> tuple[list[RawMessage], dict[int, int]]:
        """Messages in offset order per partition, and each assigned partition's start offset."""
        skip = set(skip_partitions)
        wanted = [p for p in self.partitions() if p not in skip]
        if not wanted:
            return [], {}
        starts = self.committed(wanted)
        self._consumer.assign(
            [TopicPartition(self.topic, p, off if off >= 0 else OFFSET_BEGINNING) for p, off in starts.items()]
        )
        messages: list[RawMessage] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + budget_seconds
        while len(messages) < max_messages and len(at_end) < len(wanted) and time.monotonic() < deadline:
            # A short wait: a partial batch or the end-of-partition events come back without idling.
            batch = self._consumer.consume(num_messages=min(1000, max_messages - len(messages)), timeout=0.05)
            for msg in batch:
                err = msg.error()
                # A partition-EOF event and every consumed message name their partition (other
                # errors may not, and are raised without it).
                partition = msg.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        assert partition is not None
                        at_end.add(partition)
                        continue
                    raise KafkaException(err)
                topic, offset = msg.topic(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                at_end.discard(partition)
                messages.append(
                    RawMessage(
                        MessagePosition(topic, partition, offset),
                        # The stub's HeadersType also covers producer input (dicts, str values); a
                        # consumed message's headers are a list of (str, bytes | None).
                        list(msg.headers() or []),  # type: ignore[arg-type]
                        msg.value(),
                    )
                )
        return messages, starts

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit the next offset to read, per partition (synchronously)."""
        if offsets:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, off) for p, off in sorted(offsets.items())],
                asynchronous=False,
            )
