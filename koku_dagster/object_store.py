"""The object store of CONTRACT section 5: a local directory (``file://``) or S3 (``s3://``)."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

_MONTH_DIR = re.compile(r"/year=(\d{4})/month=(\d{2})/")


def _month_of(path: str) -> date | None:
    found = _MONTH_DIR.search(path)
    return date(int(found.group(1)), int(found.group(2)), 1) if found else None


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

    def s3_client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def _local_provider_dirs(self, provider_uuid: str) -> Iterator[Path]:
        data = self.local_root / "data"
        marker = f"source={provider_uuid}"
        if data.exists():
            yield from (p for p in data.rglob(marker) if p.is_dir() and p.name == marker)

    def _delete_s3_keys(self, provider_uuid: str, wanted: Callable[[str], bool]) -> int:
        bucket, prefix = self._bucket_prefix()
        client = self.s3_client()
        marker = f"/source={provider_uuid}/"
        removed = 0
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/data/" if prefix else "data/")
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if marker in o["Key"] and wanted(o["Key"])]
            for start in range(0, len(keys), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
            removed += len(keys)
        return removed

    def delete_provider_data(self, provider_uuid: str) -> int:
        """Remove every stored path that holds ``source={uuid}``; return how many were removed."""
        if not self.is_local:
            return self._delete_s3_keys(provider_uuid, lambda _key: True)
        doomed = list(self._local_provider_dirs(provider_uuid))
        for path in doomed:
            shutil.rmtree(path)
        return len(doomed)

    def delete_months_before(self, provider_uuid: str, cutoff: date) -> int:
        """Remove the provider's month partitions older than ``cutoff`` (retention); return how many."""

        def old(path: str) -> bool:
            month = _month_of(path)
            return month is not None and month < cutoff

        if not self.is_local:
            return self._delete_s3_keys(provider_uuid, old)
        doomed = [
            month_dir
            for source_dir in self._local_provider_dirs(provider_uuid)
            for month_dir in source_dir.glob("year=*/month=*")
            if old(f"/{month_dir.relative_to(source_dir)}/")
        ]
        for path in doomed:
            shutil.rmtree(path)
        return len(doomed)
