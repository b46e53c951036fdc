"""What an ingestion step needs to know about one provider, read from the application tables."""

from __future__ import annotations

import sqlalchemy as sa

from koku_dagster.infra.db.schema import customer, provider, provider_authentication, provider_billing_source, sources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.ingest import manifests
from koku_dagster.providers.availability import build_status
from koku_dagster.providers.base import ProviderContext


def load_provider(engine: sa.Engine, provider_uuid: str) -> ProviderContext | None:
    """The provider with its customer schema, credentials and billing source; None when it does not exist."""
    query = (
        sa.select(
            provider,
            customer.c.schema_name,
            provider_authentication.c.credentials,
            provider_billing_source.c.data_source,
        )
        .select_from(provider)
        .join(customer, customer.c.id == provider.c.customer_id)
        .outerjoin(provider_authentication, provider_authentication.c.id == provider.c.authentication_id)
        .outerjoin(provider_billing_source, provider_billing_source.c.id == provider.c.billing_source_id)
        .where(provider.c.uuid == provider_uuid)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return ProviderContext(
        uuid=row["uuid"],
        name=row["name"],
        type=row["type"],
        schema=row["schema_name"],
        credentials=dict(row["credentials"] or {}),
        data_source=dict(row["data_source"] or {}),
        setup_complete=bool(row["setup_complete"]),
        active=bool(row["active"]),
        paused=bool(row["paused"]),
    )


def set_source_status(conn: sa.Connection, provider_uuid: str, status: dict[str, str]) -> bool:
    """Write the availability of the provider's source (when it changed) for the sources sensor to PATCH.

    Returns whether it changed."""
    current = conn.execute(
        sa.select(sources.c.source_id, sources.c.status).where(sources.c.koku_uuid == provider_uuid)
    ).first()
    if current is None or current.status == status:
        return False
    conn.execute(
        sa.update(sources)
        .where(sources.c.source_id == current.source_id)
        .values(status=status, status_push_pending=True, updated_timestamp=utcnow())
    )
    return True


def report_availability(engine: sa.Engine, provider_uuid: str, message: str | None) -> bool:
    """Record the source's availability as ingestion found it: available, or unavailable with ``message``
    (a fixed text, see :func:`~koku_dagster.providers.availability.status_message`). Returns whether it changed.
    """
    with engine.begin() as conn:
        return set_source_status(conn, provider_uuid, build_status(message))


def is_reachable(engine: sa.Engine, provider_uuid: str) -> bool:
    """Whether the provider's last reachability check succeeded (and none is waiting after a settings change)."""
    with engine.connect() as conn:
        return bool(conn.execute(sa.select(provider.c.reachable).where(provider.c.uuid == provider_uuid)).scalar())


def discard_if_deleted(engine: sa.Engine, object_store: ObjectStore, provider_uuid: str) -> bool:
    """After a step wrote files: when the provider was deleted (or is being deleted: it is made
    inactive first) meanwhile, remove its files and manifests again and return True.

    The deletion removed the files before this step wrote its own; without this they would
    outlive the provider.
    """
    with engine.connect() as conn:
        live = conn.execute(sa.select(provider.c.active).where(provider.c.uuid == provider_uuid)).scalar()
    if live:
        return False
    object_store.delete_provider_data(provider_uuid)
    with engine.begin() as conn:
        manifests.delete_manifest_rows(conn, manifests.provider_manifests(provider_uuid))
    return True


def provider_source_links(engine: sa.Engine) -> tuple[set[str], list[str]]:
    """(every provider uuid, the provider uuid of every source linked to one) for the records check."""
    with engine.connect() as conn:
        provider_ids = set(conn.execute(sa.select(provider.c.uuid)).scalars())
        linked = list(conn.execute(sa.select(sources.c.koku_uuid).where(sources.c.koku_uuid.is_not(None))).scalars())
    return provider_ids, linked
