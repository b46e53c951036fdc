from __future__ import annotations

import dagster as dg


class KafkaResource(dg.ConfigurableResource):
    """Kafka bootstrap servers and the topics of sources events, payload announcements and validation results."""

    bootstrap_servers: str
    sources_topic: str
    upload_topic: str
    validation_topic: str
