from __future__ import annotations

import dagster as dg

from koku_dagster.providers.base import CloudEndpoints


class CloudApisResource(dg.ConfigurableResource):
    """Where the Azure and Google Cloud APIs answer (``KOKU_AZURE_*``, ``KOKU_GCP_BIGQUERY_URL``)."""

    azure_authority_host: str
    azure_management_url: str
    azure_blob_url: str
    gcp_bigquery_url: str | None

    def endpoints(self) -> CloudEndpoints:
        return CloudEndpoints(
            azure_authority_host=self.azure_authority_host,
            azure_management_url=self.azure_management_url,
            azure_blob_url=self.azure_blob_url,
            gcp_bigquery_url=self.gcp_bigquery_url,
        )
