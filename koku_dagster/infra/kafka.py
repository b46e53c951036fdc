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

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

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


#: Wanted offsets further apart than this are reached by a new assignment, not by reading through.
_SEEK_GAP = 500


def _headers(msg: Message) -> list[tuple[str, bytes | None]]:
    # The stub's HeadersType also covers producer input (dicts, str values); a consumed message's
    # headers are a list of (str, bytes | None).
    return list(msg.headers() or [])  # type: ignore[arg-type]


class BatchConsumer:
    """One short-lived consumer for one topic and group; use as a context manager."""

    def __init__(self, bootstrap: str, topic: str, group_id: str, security: KafkaSecurity | None = None) -> None:
        self.topic = topic
        self.group_id = group_id
        self._commit_results: list[KafkaError | None] = []
        config = {**consumer_config(bootstrap, group_id, security), "on_commit": self._on_commit}
        self._consumer = Consumer(config)

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

    def read(self, *, max_messages: int, budget_seconds: float) -> tuple[list[RawMessage], dict[int, int]]:
        """Messages in offset order per partition, and each assigned partition's start offset."""
        wanted = self.partitions()
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
                messages.append(RawMessage(MessagePosition(topic, partition, offset), _headers(msg), msg.value()))
        return messages, starts

    def _on_commit(self, err: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        self._commit_results.append(err)

    def commit(self, offsets: dict[int, int], timeout: float = 10.0) -> bool:
        """Commit the next offset to read, per partition; wait for the broker at most ``timeout`` seconds.

        False when no answer came in time (the offsets may or may not be committed: the caller's
        effects are durable and idempotent, so a later pass reading the messages again is harmless).
        Raises :class:`KafkaException` when the broker refused the commit.
        """
        if not offsets:
            return True
        self._commit_results.clear()
        self._consumer.commit(
            offsets=[TopicPartition(self.topic, p, off) for p, off in sorted(offsets.items())], asynchronous=True
        )
        deadline = time.monotonic() + timeout
        while not self._commit_results and time.monotonic() < deadline:
            self._consumer.poll(0.05)  # serves the commit callback; a message it may return is not used
        if not self._commit_results:
            log.warning("Kafka did not confirm the offset commit within %.1fs", timeout)
            return False
        err = self._commit_results[0]
        if err is not None:
            raise KafkaException(err)
        return True

    def fetch(
        self, wanted: Iterable[tuple[int, int]], budget_seconds: float
    ) -> tuple[list[RawMessage], set[MessagePosition]]:
        """Read the messages at the given (partition, offset) positions again.

        Returns those read, and the positions Kafka no longer holds (below the partition's low
        watermark, or skipped over). Positions neither read nor gone were not reached in time.
        """
        deadline = time.monotonic() + budget_seconds
        by_partition: dict[int, set[int]] = {}
        for partition, offset in wanted:
            by_partition.setdefault(partition, set()).add(offset)
        found: list[RawMessage] = []
        gone: set[MessagePosition] = set()
        for partition, offsets in sorted(by_partition.items()):
            low, _high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=max(0.1, deadline - time.monotonic())
            )
            gone |= {MessagePosition(self.topic, partition, o) for o in offsets if o < low}
            todo = sorted(o for o in offsets if o >= low)
            while todo and time.monotonic() < deadline:
                todo = self._fetch_run(partition, todo, found, gone, deadline)
        return found, gone

    def _fetch_run(
        self, partition: int, todo: list[int], found: list[RawMessage], gone: set[MessagePosition], deadline: float
    ) -> list[int]:
        """Read from ``todo[0]`` on while the next wanted offset is near; return the offsets still to read."""
        self._consumer.assign([TopicPartition(self.topic, partition, todo[0])])
        while todo and time.monotonic() < deadline:
            batch = self._consumer.consume(num_messages=min(1000, todo[-1] - todo[0] + 1), timeout=0.1)
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return todo  # nothing further yet
                    raise KafkaException(err)
                offset = msg.offset()
                assert offset is not None
                while todo and todo[0] < offset:  # skipped over: not in the log any more
                    gone.add(MessagePosition(self.topic, partition, todo.pop(0)))
                if todo and todo[0] == offset:
                    todo.pop(0)
                    found.append(RawMessage(MessagePosition(self.topic, partition, offset), _headers(msg), msg.value()))
                if todo and todo[0] - offset > _SEEK_GAP:
                    return todo  # far ahead: assign there
        return todo
