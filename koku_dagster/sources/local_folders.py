"""Tenant isolation of ``*-local`` folders: no two organizations read overlapping folders.

A folder overlaps another when they are the same or one lies inside the other (after symlinks).
The check runs when a provider is created or updated, against every local provider of other
organizations and those planned earlier in the same chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import customer, provider, provider_billing_source
from koku_dagster.providers import REGISTRY, provider_type
from koku_dagster.sources.errors import ProviderValidationError

OVERLAP_MESSAGE = "The local bucket path overlaps a folder that another organization's source reads."


def _key(type_name: str) -> str | None:
    return provider_type(type_name).local_directory_key if type_name in REGISTRY else None


def local_folder(type_name: str, data_source: dict[str, Any]) -> Path | None:
    """The folder a ``*-local`` provider reads (resolved), or None for other types or no usable path."""
    key = _key(type_name)
    text = data_source.get(key) if key else None
    if not isinstance(text, str) or not text or "\x00" in text:
        return None
    return Path(text).resolve()


def overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def load_local_folders(conn: sa.Connection) -> list[tuple[str, str, Path]]:
    """(provider uuid, org id, folder) of every stored local provider."""
    local_types = sorted(name for name in REGISTRY if _key(name))
    query = (
        sa.select(provider.c.uuid, provider.c.type, customer.c.org_id, provider_billing_source.c.data_source)
        .select_from(
            provider.join(customer, provider.c.customer_id == customer.c.id).join(
                provider_billing_source, provider.c.billing_source_id == provider_billing_source.c.id
            )
        )
        .where(provider.c.type.in_(local_types))
    )
    found = []
    for uuid_, type_name, org_id, data_source in conn.execute(query):
        folder = local_folder(type_name, data_source or {})
        if folder is not None:
            found.append((uuid_, org_id, folder))
    return found


def check_not_shared(folder: Path | None, org_id: str, uuid_: str, known: list[tuple[str, str, Path]]) -> None:
    """:class:`ProviderValidationError` if ``folder`` overlaps a folder another organization reads."""
    if folder is None:
        return
    for other_uuid, other_org, other in known:
        if other_uuid != uuid_ and other_org != org_id and overlaps(folder, other):
            raise ProviderValidationError(OVERLAP_MESSAGE)
