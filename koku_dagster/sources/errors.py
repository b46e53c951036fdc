"""Error classes of the sources integration, with Koku's classification."""

from __future__ import annotations


class SourcesError(Exception):
    """Base class; messages never carry secrets or identity headers."""


class SourceNotFound(SourcesError):
    """Platform Sources answered 404 "source not found": the source is gone."""


class SourcesApiError(SourcesError):
    """Retryable: connection failure, timeout, non-2xx answer or bad JSON."""


class SourceDataError(SourcesError):
    """The source's data is incomplete or invalid; reported as "unavailable", not retried."""


class PoisonMessage(SourcesError):
    """A Kafka message that can never be processed (bad JSON, bad identity, ...)."""


class ProviderValidationError(SourcesError):
    """A provider cannot be created or updated from the source as it stands (user must fix it)."""
