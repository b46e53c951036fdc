from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.providers.aws import assume_role_credentials
from koku_dagster.providers.base import CloudEndpoints, ReportAccess
from koku_dagster.uploads.download import UrlPolicy


class ObjectStoreResource(dg.ConfigurableResource):
    """Where archived CSV and Parquet live (``KOKU_OBJECT_STORE_URL``), and where reports are read:
    the local bucket roots, and AWS report buckets (``AWS_ENDPOINT_URL`` for both S3 uses)."""

    url: str
    endpoint_url: str | None
    #: Colon-separated ``KOKU_LOCAL_BUCKET_ROOTS``.
    local_bucket_roots: str
    #: This machine's mirror of an ``s3://`` store (steps read and write files there, fetching what they read
    #: and publishing what they wrote); empty for a ``file://`` store.
    cache_dir: str
    #: Space-separated ``KOKU_UPLOAD_URL_ALLOWLIST``: URL prefixes payloads may come from although not public.
    upload_url_allowlist: str = ""

    def object_store(self) -> ObjectStore:
        return ObjectStore(self.url, self.endpoint_url, Path(self.cache_dir) if self.cache_dir else None)

    def report_access(self, endpoints: CloudEndpoints) -> ReportAccess:
        """How readers reach reports: the local roots, S3 as the provider's role, and the cloud endpoints."""
        return ReportAccess(self.roots(), self.report_s3_client, endpoints)

    def url_policy(self) -> UrlPolicy:
        """Where OpenShift payloads may be fetched from (the allow-list and the local bucket roots)."""
        return UrlPolicy(tuple(self.upload_url_allowlist.split()), self.roots())

    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(p).resolve() for p in self.local_bucket_roots.split(":") if p)

    def report_s3_client(self, role_arn: str, external_id: str | None, region: str | None) -> Any:
        """An S3 client of ``dagster_aws`` acting as the provider's role (STS AssumeRole)."""
        credentials = assume_role_credentials(role_arn, external_id, region=region, endpoint_url=self.endpoint_url)
        return S3Resource(
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials["aws_secret_access_key"],
            aws_session_token=credentials["aws_session_token"],
        ).get_client()
