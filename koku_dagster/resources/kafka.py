from __future__ import annotations

import dagster as dg
from pydantic import Field

from koku_dagster.infra.settings import KafkaSecurity


class KafkaResource(dg.ConfigurableResource):
    """Kafka bootstrap servers, the topics of sources events, payload announcements and validation results,
    and the TLS/SASL settings every consumer and producer uses (``KOKU_KAFKA_*``; unset means plaintext).

    The password is wired as the environment variable ``KOKU_KAFKA_SASL_PASSWORD`` (see ``definitions.py``),
    so the UI and run config show the variable's name, and it is left out of this resource's repr.
    """

    bootstrap_servers: str
    sources_topic: str
    upload_topic: str
    validation_topic: str
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False, description="secret: set from the environment")
    ssl_ca_location: str | None = None

    def security(self) -> KafkaSecurity:
        """The settings handed to :mod:`koku_dagster.infra.kafka` consumers and producers."""
        return KafkaSecurity(
            protocol=self.security_protocol or None,
            sasl_mechanism=self.sasl_mechanism or None,
            sasl_username=self.sasl_username or None,
            sasl_password=self.sasl_password or None,
            ssl_ca_location=self.ssl_ca_location or None,
        )
