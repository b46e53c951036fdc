"""Source and provider records: tables kept by ``platform_sources_sensor``, checked on demand."""

from __future__ import annotations

import dagster as dg

from koku_dagster.assets import OWNERS
from koku_dagster.ingest.provider import provider_source_links
from koku_dagster.resources import ApplicationDatabase

source_records = dg.AssetSpec(
    "source_records",
    description=(
        "Platform Sources sources attached to cost management (table `api_sources`), kept by "
        "`platform_sources_sensor` from Kafka events and the Platform Sources REST API."
    ),
    group_name="sources",
    owners=OWNERS,
    code_version="1",
    kinds={"kafka", "sql"},
    metadata={"table": "api_sources"},
)

provider_records = dg.AssetSpec(
    "provider_records",
    description=(
        "Cost-management providers (table `api_provider`), created, updated, paused and deleted "
        "from complete source records; each has a `providers` partition key."
    ),
    group_name="sources",
    owners=OWNERS,
    code_version="1",
    kinds={"sql"},
    deps=[source_records],
    metadata={"table": "api_provider"},
)


@dg.asset_check(asset=provider_records.key, description="Every provider belongs to exactly one source, and back.")
def providers_match_sources(app_db: ApplicationDatabase) -> dg.AssetCheckResult:
    provider_ids, linked = provider_source_links(app_db.engine())
    orphans = sorted(provider_ids - set(linked))
    dangling = sorted(set(linked) - provider_ids)
    return dg.AssetCheckResult(
        passed=not orphans and not dangling and len(linked) == len(set(linked)),
        metadata={
            "providers": len(provider_ids),
            "linked_sources": len(linked),
            "providers_without_source": len(orphans),
            "sources_with_missing_provider": len(dangling),
            "examples": ", ".join((orphans + dangling)[:5]) or "none",
        },
    )
