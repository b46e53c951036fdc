"""Validation results on ``KOKU_VALIDATION_TOPIC``: ``{"request_id": ..., "validation": "success"|"failure"}``.

Sent after the outcome is committed and remembered (``validation_sent``) once the broker acknowledged
it, so an interrupted send is repeated: at least once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from koku_dagster.infra.kafka import producer_config
from koku_dagster.infra.settings import KafkaSecurity
from koku_dagster.uploads import upload_records
from koku_dagster.uploads.upload_records import FAILURE, SUCCESS, Upload

log = logging.getLogger(__name__)


def validation_message(request_id: str, outcome: str) -> bytes:
    assert outcome in (SUCCESS, FAILURE)
    return json.dumps({"request_id": request_id, "validation": outcome}).encode()


def produce_validations(
    bootstrap: str,
    topic: str,
    results: Iterable[tuple[str, str]],
    timeout: float = 10.0,
    security: KafkaSecurity | None = None,
) -> set[str]:
    """Produce (request_id, outcome) results; return the request ids the broker acknowledged."""
    delivered: set[str] = set()
    pending = list(results)
    if not pending:
        return delivered

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            delivered.add((msg.key() or b"").decode())
        else:
            log.warning("validation result not delivered: %s", err.str())

    producer = Producer(
        producer_config(bootstrap, security, log_level=2, **{"message.timeout.ms": int(timeout * 1000), "acks": "all"})
    )
    try:
        for request_id, outcome in pending:
            producer.produce(
                topic, key=request_id.encode(), value=validation_message(request_id, outcome), on_delivery=on_delivery
            )
            producer.poll(0)
        producer.flush(timeout)
    except (KafkaException, BufferError) as exc:
        log.warning("validation results not sent: %s", exc)
    return delivered


def send_validations(
    engine: sa.Engine,
    bootstrap: str,
    topic: str,
    due: Iterable[Upload],
    timeout: float = 10.0,
    security: KafkaSecurity | None = None,
) -> set[str]:
    """Send the results of finished uploads and remember which were delivered."""
    results = [(u.request_id, u.state) for u in due if u.state in (SUCCESS, FAILURE)]
    delivered = produce_validations(bootstrap, topic, results, timeout, security)
    upload_records.mark(engine, delivered, "validation_sent")
    return delivered
