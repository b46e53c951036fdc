"""Event publishing: the service's Kafka headers and key, the in-memory record, and the producer."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from koku_devtools.platform_sources.tenants import RequestIdentity

log = logging.getLogger(__name__)

#: ``(event_type, body)`` as a write returns it, the body already in the Kafka event form.
Event = tuple[str, dict[str, Any]]
DEFAULT_TOPIC = "platform.sources.event-stream"
SECRET_HEADERS = frozenset({"x-rh-identity", "x-rh-sources-psk", "authorization", "cookie"})


class RecordedEvent(NamedTuple):
    """An event as published: type, ordered Kafka headers, and the JSON body."""

    event_type: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def key(self) -> str:
        """The Kafka key: org id, else account number, else the identity header."""
        h = self.headers
        return h.get("x-rh-sources-org-id") or h.get("x-rh-sources-account-number") or h["x-rh-identity"]

    def __repr__(self) -> str:
        shown = {k: ("***" if k in SECRET_HEADERS else v) for k, v in self.headers.items()}
        return f"RecordedEvent({self.event_type!r}, {shown!r}, {self.body!r})"


def event_headers(caller: RequestIdentity, event_type: str) -> dict[str, str]:
    """The Kafka headers the service sends with an event caused by ``caller``, in its order."""
    headers: dict[str, str] = {}
    if caller.forward_account:
        headers["x-rh-sources-account-number"] = caller.forward_account
    if caller.forward_org_id:
        headers["x-rh-sources-org-id"] = caller.forward_org_id
    headers["x-rh-identity"] = caller.forward_identity
    headers["event_type"] = event_type
    headers["encoding"] = "json"
    return headers


def _on_delivery(err: Any, msg: Any) -> None:
    if err is not None:
        log.warning("stand-in: event delivery failed: %s", err)


class EventPublisher:
    """Records every event in :attr:`recorded` and, with a bootstrap server, produces it to Kafka.

    Synchronous by default: each batch of events is flushed before the write is answered (as
    the service does). ``publish_async`` only polls the producer, so a write does not wait for
    the broker; the events, their order and the topic's contents are the same.
    """

    def __init__(
        self,
        kafka_bootstrap: str | None,
        topic: str,
        record_lock: threading.Lock,
        *,
        publish_async: bool = False,
        flush_timeout: float = 10.0,
    ) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.topic = topic
        self.publish_async = publish_async
        self.flush_timeout = flush_timeout
        self.recorded: list[RecordedEvent] = []
        self._record_lock = record_lock
        self._producer: Any = None

    def connect(self) -> None:
        """Create the Kafka producer (when a bootstrap server is set and none exists yet)."""
        if not self.kafka_bootstrap or self._producer is not None:
            return
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": self.kafka_bootstrap,
                "client.id": "platform-sources-standin",
                "message.timeout.ms": int(self.flush_timeout * 1000),
                "log_level": 2,  # connection chatter is not the stand-in's business
            }
        )

    def close(self) -> None:
        """Flush and drop the producer; a new one on the next :meth:`connect` (no client left retrying
        a gone broker)."""
        if self._producer is not None:
            self._producer.flush(self.flush_timeout)
            self._producer = None

    def publish(self, events: Iterable[Event], caller: RequestIdentity) -> None:
        """Record and produce the events of one write, with the headers ``caller`` gives them."""
        produced = False
        for event_type, body in events:
            event = RecordedEvent(event_type, event_headers(caller, event_type), body)
            with self._record_lock:
                self.recorded.append(event)
            if self._producer is not None:
                self._produce(event)
                produced = True
        if not produced:
            return
        if self.publish_async:
            self._producer.poll(0)
            return
        left = self._producer.flush(self.flush_timeout)
        if left:
            log.warning("stand-in: %d event(s) not delivered to Kafka yet", left)

    def _produce(self, event: RecordedEvent) -> None:
        kwargs = {
            "key": event.key.encode(),
            "value": json.dumps(event.body, separators=(",", ":")).encode(),
            "headers": [(k, v.encode()) for k, v in event.headers.items()],
            "on_delivery": _on_delivery,
        }
        try:
            self._producer.produce(self.topic, **kwargs)
        except BufferError:
            self._producer.flush(self.flush_timeout)
            self._producer.produce(self.topic, **kwargs)
