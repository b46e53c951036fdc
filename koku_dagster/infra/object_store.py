"""The object store: a local directory (``file://``) or S3 (``s3://``).

Deletion and retention touch one provider only: they look for its ``source={uuid}`` folders at the
places the layout puts them (:data:`PROVIDER_FOLDERS`), listing folder names level by level down to
them, and list objects only inside them; never every object under ``data/`` of every tenant.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

_MONTH_DIR = re.compile(r"/year=(\d{4})/month=(\d{2})/")
#: Where a provider's ``source={uuid}`` folders sit below ``data/`` (``*``: any one folder name).
PROVIDER_FOLDERS = (
    "csv/*/*",
    "parquet/*/*",
    "parquet/*/OCP/*",
    "parquet/daily/*/*/raw",
    "parquet/daily/*/OCP/*",
    "summary/*",
    "focus",
)
#: Keys listed under one provider's folders before deletion gives up (it then continues next time).
MAX_LISTED_KEYS = 1_000_000


def _source_folder(provider_uuid: str) -> str:
    if str(uuid.UUID(provider_uuid)) != provider_uuid:
        raise ValueError(f"provider uuid must be lowercase hyphenated: {provider_uuid!r}")
    return f"source={provider_uuid}"


def _month_of(path: str) -> date | None:
    found = _MONTH_DIR.search(path)
    return date(int(found.group(1)), int(found.group(2)), 1) if found else None


def _same_content(path: Path, obj: dict[str, Any]) -> bool:
    """Whether a local file holds an object's content: same size, and the MD5 its ETag gives (a
    multipart upload's ETag is not an MD5: such a file is fetched again)."""
    etag = str(obj.get("ETag", "")).strip('"')
    if path.stat().st_size != obj.get("Size") or "-" in etag or len(etag) != 32:
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == etag


@dataclass(frozen=True)
class ObjectStore:
    """A ``file://`` directory, or an ``s3://`` bucket (and prefix) seen through a local mirror.

    Steps read and write files under :attr:`local_root`. For S3 that is ``cache_dir``, a mirror of
    this machine only: the bucket is the truth. A step :meth:`fetch`-es every partition it reads
    (the mirror may lack it, or hold a copy another machine has since replaced) and
    :meth:`publish`-es each partition it wrote, replacing the partition's objects.
    """

    url: str
    endpoint_url: str | None = None
    cache_dir: Path | None = None

    @property
    def is_local(self) -> bool:
        return urlparse(self.url).scheme in ("", "file")

    @property
    def local_root(self) -> Path:
        parsed = urlparse(self.url)
        if parsed.scheme in ("", "file"):
            return Path(parsed.path if parsed.scheme == "file" else self.url)
        if self.cache_dir is None:
            raise ValueError("an s3:// object store needs a local cache directory")
        return self.cache_dir

    def _key_prefix(self, partition: Path) -> str:
        _, prefix = self._bucket_prefix()
        relative = partition.relative_to(self.local_root).as_posix()
        return f"{prefix}/{relative}/" if prefix else f"{relative}/"

    def publish(self, partition: Path) -> int:
        """Make the store's copy of a partition equal the local one; return the files uploaded."""
        if self.is_local:
            return 0
        bucket, _ = self._bucket_prefix()
        client = self.s3_client()
        key_prefix = self._key_prefix(partition)
        stale = [
            {"Key": o["Key"]}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
            for o in page.get("Contents", [])
        ]
        files = sorted(p for p in partition.rglob("*") if p.is_file()) if partition.exists() else []
        for path in files:
            client.upload_file(str(path), bucket, key_prefix + path.relative_to(partition).as_posix())
        uploaded = {key_prefix + p.relative_to(partition).as_posix() for p in files}
        stale = [k for k in stale if k["Key"] not in uploaded]
        for start in range(0, len(stale), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": stale[start : start + 1000]})
        return len(files)

    def fetch(self, partition: Path) -> int:
        """Make the mirror's copy of a partition equal the store's; return the files downloaded.

        Files whose content already matches (MD5 against the object's ETag) are kept, others are
        downloaded beside the partition and moved into place one by one, and files the store no
        longer has are removed. Two steps fetching the same unchanged partition touch nothing.
        """
        if self.is_local:
            return 0
        bucket, _ = self._bucket_prefix()
        client = self.s3_client()
        key_prefix = self._key_prefix(partition)
        remote = {
            obj["Key"][len(key_prefix) :]: obj
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
            for obj in page.get("Contents", [])
        }
        local = {p.relative_to(partition).as_posix(): p for p in partition.rglob("*") if p.is_file()}
        for name in local.keys() - remote.keys():
            local[name].unlink()  # gone from the store (replaced or purged elsewhere)
        wanted = sorted(n for n, obj in remote.items() if n not in local or not _same_content(local[n], obj))
        if wanted:
            partition.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".staging-fetch-{partition.name}-", dir=partition.parent))
            try:
                for name in wanted:
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, key_prefix + name, str(staging / name))
                    (partition / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / name, partition / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return len(wanted)

    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.url)
        return parsed.netloc, parsed.path.strip("/")

    def s3_client(self) -> Any:
        """A client from a new session, so that credentials are read from the environment now."""
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url)

    def _local_provider_dirs(self, provider_uuid: str) -> Iterator[Path]:
        """The provider's ``source={uuid}`` folders in the mirror or local store (layout places only)."""
        data = self.local_root / "data"
        marker = _source_folder(provider_uuid)  # canonical: no glob characters
        for pattern in PROVIDER_FOLDERS:
            yield from (p for p in data.glob(f"{pattern}/{marker}") if p.is_dir())

    def _s3_provider_prefixes(self, client: Any, bucket: str, provider_uuid: str) -> Iterator[str]:
        """The provider's ``source={uuid}/`` key prefixes: folder names are listed level by level
        (``Delimiter``) where the layout has a ``*``, never the objects of other providers."""
        _, prefix = self._bucket_prefix()
        marker = _source_folder(provider_uuid)
        paginator = client.get_paginator("list_objects_v2")
        for pattern in PROVIDER_FOLDERS:
            levels = [f"{prefix}/data/" if prefix else "data/"]
            for part in pattern.split("/"):
                if part != "*":
                    levels = [f"{level}{part}/" for level in levels]
                    continue
                levels = [
                    common["Prefix"]
                    for level in levels
                    for page in paginator.paginate(Bucket=bucket, Prefix=level, Delimiter="/")
                    for common in page.get("CommonPrefixes", [])
                ]
            yield from (f"{level}{marker}/" for level in levels)

    def _delete_s3_keys(self, provider_uuid: str, wanted: Callable[[str], bool]) -> int:
        bucket, _ = self._bucket_prefix()
        client = self.s3_client()
        removed = listed = 0
        for key_prefix in self._s3_provider_prefixes(client, bucket, provider_uuid):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
                contents = page.get("Contents", [])
                listed += len(contents)
                if listed > MAX_LISTED_KEYS:
                    raise RuntimeError(f"more than {MAX_LISTED_KEYS} objects of provider {provider_uuid}")
                keys = [{"Key": o["Key"]} for o in contents if wanted(o["Key"])]
                for start in range(0, len(keys), 1000):
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
                removed += len(keys)
        return removed

    def delete_provider_data(self, provider_uuid: str) -> int:
        """Remove every stored path that holds ``source={uuid}``; return how many were removed."""
        removed = 0 if self.is_local else self._delete_s3_keys(provider_uuid, lambda _key: True)
        if self.is_local or self.cache_dir is not None:
            doomed = list(self._local_provider_dirs(provider_uuid))
            for path in doomed:
                shutil.rmtree(path)
            removed += len(doomed)
        return removed

    def delete_months_before(self, provider_uuid: str, cutoff: date) -> int:
        """Remove the provider's month partitions older than ``cutoff`` (retention); return how many."""

        def old(path: str) -> bool:
            month = _month_of(path)
            return month is not None and month < cutoff

        removed = 0 if self.is_local else self._delete_s3_keys(provider_uuid, old)
        if not self.is_local and self.cache_dir is None:
            return removed
        doomed = [
            month_dir
            for source_dir in self._local_provider_dirs(provider_uuid)
            for month_dir in source_dir.glob("year=*/month=*")
            if old(f"/{month_dir.relative_to(source_dir)}/")
        ]
        for path in doomed:
            shutil.rmtree(path)
        return removed + len(doomed)
