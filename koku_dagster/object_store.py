"""The object store of CONTRACT section 5: a local directory (``file://``) or S3 (``s3://``)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectStore:
    url: str
    endpoint_url: str | None = None

    @property
    def is_local(self) -> bool:
        return urlparse(self.url).scheme in ("", "file")

    @property
    def local_root(self) -> Path:
        parsed = urlparse(self.url)
        return Path(parsed.path if parsed.scheme == "file" else self.url)

    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.url)
        return parsed.netloc, parsed.path.strip("/")

    def s3_client(self):  # noqa: ANN201 - boto3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def delete_provider_data(self, provider_uuid: str) -> int:
        """Remove every stored path that holds ``source={uuid}``; return how many were removed."""
        marker = f"source={provider_uuid}"
        if self.is_local:
            data = self.local_root / "data"
            if not data.exists():
                return 0
            doomed = [p for p in data.rglob(marker) if p.is_dir() and p.name == marker]
            for path in doomed:
                shutil.rmtree(path)
            return len(doomed)
        bucket, prefix = self._bucket_prefix()
        client = self.s3_client()
        root = f"{prefix}/data/" if prefix else "data/"
        removed = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if f"/{marker}/" in o["Key"]]
            for start in range(0, len(keys), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
            removed += len(keys)
        return removed
