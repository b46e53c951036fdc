from __future__ import annotations

from pathlib import Path

import dagster as dg

from koku_dagster.object_store import ObjectStore


class ObjectStoreResource(dg.ConfigurableResource):
    """Where archived CSV and Parquet live (``KOKU_OBJECT_STORE_URL``), and the local bucket roots."""

    url: str
    endpoint_url: str | None = None
    local_bucket_roots: str = ""
    #: Local mirror of an ``s3://`` store (steps read and write files there).
    cache_dir: str = ""

    def store(self) -> ObjectStore:
        return ObjectStore(self.url, self.endpoint_url, Path(self.cache_dir) if self.cache_dir else None)

    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(p).resolve() for p in self.local_bucket_roots.split(":") if p)
