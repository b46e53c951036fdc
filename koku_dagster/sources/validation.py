"""Checks that a source can back a provider before the provider is created or updated.

Local (``*-local``) types read directories, which must lie under ``KOKU_LOCAL_BUCKET_ROOTS``.
Cloud types get structural checks here; reachability is proven by the first ingestion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from koku_dagster.sources.errors import ProviderValidationError
from koku_dagster.sources.model import base_type

#: data_source key that names the local directory, per local type.
LOCAL_DIRECTORY_KEY = {"AWS-local": "bucket", "Azure-local": "storage_account", "GCP-local": "bucket"}


def resolve_local_directory(path_text: str, roots: tuple[Path, ...]) -> Path:
    """The directory a local source may read, or :class:`ProviderValidationError`.

    Refuses relative paths, ``..`` components and anything that resolves (after symlinks)
    outside every allowed root.
    """
    if not isinstance(path_text, str) or not path_text or "\x00" in path_text:
        raise ProviderValidationError("The local bucket path is empty or invalid.")
    raw = Path(path_text)
    if not raw.is_absolute() or ".." in raw.parts:
        raise ProviderValidationError("The local bucket path must be absolute and must not contain '..'.")
    resolved = raw.resolve()
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise ProviderValidationError("The local bucket path is outside the allowed local bucket roots.")
    if not resolved.is_dir():
        raise ProviderValidationError("The local bucket directory does not exist.")
    return resolved


def validate_provider_settings(
    provider_type: str, credentials: dict[str, Any], data_source: dict[str, Any], local_roots: tuple[Path, ...]
) -> None:
    family = base_type(provider_type)
    if family == "AWS" and not credentials.get("role_arn"):
        raise ProviderValidationError("The role ARN is missing.")
    if family == "AWS" and not data_source.get("bucket"):
        raise ProviderValidationError("The S3 bucket is missing.")
    if family == "OCP" and not credentials.get("cluster_id"):
        raise ProviderValidationError("The cluster ID is missing.")
    key = LOCAL_DIRECTORY_KEY.get(provider_type)
    if key is not None:
        resolve_local_directory(data_source.get(key, ""), local_roots)
