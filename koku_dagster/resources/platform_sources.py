from __future__ import annotations

import dagster as dg

from koku_dagster.sources.client import SourcesClient


class PlatformSourcesResource(dg.ConfigurableResource):
    """The Platform Sources REST service (``SOURCES_API_URL`` and prefixes, ``SOURCES_PSK``)."""

    api_url: str
    api_prefix: str
    internal_api_prefix: str
    psk: str

    def client(self) -> SourcesClient:
        base = self.api_url.rstrip("/")
        return SourcesClient(base + self.api_prefix, base + self.internal_api_prefix, self.psk)
