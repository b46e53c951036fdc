"""Job ``check_source_reachability``: check whether the given providers' sources can be reached.

One op, not an asset: a check changes the providers' availability (recorded in the application
tables and pushed to Platform Sources by ``platform_sources_sensor``), which no asset stands for.
Runs are requested by ``source_reachability_sensor``; the checks can take seconds each, so they run
here and not inside a sensor tick.
"""

import dagster as dg

from koku_dagster.ingest.reachability import CheckLimits, check_providers
from koku_dagster.resources import ApplicationDatabase, CloudApisResource, ObjectStoreResource

#: At most this many providers per run.
MAX_PROVIDERS_PER_RUN = CheckLimits().max_providers


class ReachabilityConfig(dg.Config):
    """Which providers to check (uuids; missing or deleted ones are left out)."""

    provider_uuids: list[str]


@dg.op(
    name="check_sources",
    description=(
        "Check that each provider's reports can be reached (AWS: role, bucket, CUR definition; Azure: token, "
        "export, container; GCP: dataset, table, day partitions; local types: folder), with a timeout per "
        "check, and record the outcome as the source's availability."
    ),
)
def check_sources(
    context: dg.OpExecutionContext,
    config: ReachabilityConfig,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    cloud_apis: CloudApisResource,
) -> None:
    access = object_store.report_access(cloud_apis.endpoints())
    outcomes = check_providers(app_db.engine(), access, config.provider_uuids[:MAX_PROVIDERS_PER_RUN])
    for o in outcomes:
        if o.reachable:
            context.log.info(f"provider {o.provider_uuid}: reachable")
        else:  # the cause is the raw error with the provider's credentials redacted
            context.log.warning(f"provider {o.provider_uuid}: unreachable: {o.message} (cause: {o.cause})")
        if not o.recorded:
            context.log.info(f"provider {o.provider_uuid}: settings changed or deleted meanwhile; not recorded")
    reachable = sum(1 for o in outcomes if o.reachable)
    context.log.info(f"{len(outcomes)} checked: {reachable} reachable, {len(outcomes) - reachable} unreachable")


@dg.job(
    name="check_source_reachability",
    executor_def=dg.in_process_executor,
    description="Check the reachability of the given providers' sources (config: provider_uuids).",
    # A pass checks for at most 240 s (ingest/reachability.py); 15 minutes leaves room for a slow start.
    tags={"koku/kind": "reachability", "dagster/max_runtime": str(15 * 60)},
)
def check_source_reachability() -> None:
    check_sources()


def reachability_run_request(provider_uuids: list[str], run_key: str) -> dg.RunRequest:
    """The run of :data:`check_source_reachability` for these providers."""
    return dg.RunRequest(
        run_key=run_key,
        job_name=check_source_reachability.name,
        run_config=dg.RunConfig(ops={check_sources.name: ReachabilityConfig(provider_uuids=provider_uuids)}),
    )


__all__ = ["ReachabilityConfig", "check_source_reachability", "reachability_run_request"]
