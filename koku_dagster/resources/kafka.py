from __future__ import annotations

import dagster as dg


class KafkaResource(dg.ConfigurableResource):
    """Kafka bootstrap servers and the topics of CONTRACT section 2 and 7."""

    bootstrap_servers: str
    sources_topic: str = "platform.sources.event-stream"
    upload_topic: str = "platform.upload.announce"
    validation_topic: str = "platform.upload.validation"
