"""Support for the fault suite: a job killed in a subprocess, and what every fault case compares.

``busy_payload_job`` stands in for a payload run that is busy when it is killed: its op holds the
OpenShift line-items lock exclusively (as ``process_ocp_payload`` does), leaves a ``.staging-*``
folder as a replacement in progress would, and sleeps until killed.

``snapshot`` is the state a fault must leave exactly as a run without the fault would: the
application tables row by row and the object store file by file.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from koku_dagster.infra.db.schema import metadata
from koku_dagster.ingest.ocp_lock import ocp_line_items_lock


@dg.op
def busy_payload() -> None:
    home = Path(os.environ["FAULT_HOME"])
    with ocp_line_items_lock(home, exclusive=True, timeout=5):
        (home / "store/data/x/.staging-month=11-dead").mkdir(parents=True, exist_ok=True)
        (home / "locked").touch()
        time.sleep(120)


@dg.job(tags={"koku/kind": "ocp-payload"}, executor_def=dg.in_process_executor)
def busy_payload_job() -> None:
    busy_payload()


#: Tables a fault may not change beyond what the work itself does, with the column they are sorted by.
TABLES = {
    "api_customer": "schema_name",
    "api_sources": "source_id",
    "api_provider": "uuid",
    "api_providerauthentication": "id",
    "api_providerbillingsource": "id",
    "ocp_payload_upload": "request_id",
    "reporting_common_costusagereportmanifest": "id",
    "reporting_common_costusagereportstatus": "id",
    "sources_parked_message": "offset",
    "sources_rejected_message": "id",
}
#: Columns that record when something last happened (a replay or retry may touch them).
VOLATILE = {"updated_timestamp", "last_polled", "date_updated"}


def table_rows(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, order_by in TABLES.items():
            table = metadata.tables[name]
            rows = conn.execute(sa.select(table).order_by(table.c[order_by])).mappings().all()
            out[name] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return out


def store_files(root: Path) -> dict[str, int]:
    """Every file under the object store's ``data/`` (relative path -> size)."""
    data = root / "data"
    return {str(p.relative_to(data)): p.stat().st_size for p in sorted(data.rglob("*")) if p.is_file()}


def no_duplicates(engine: sa.Engine) -> None:
    """One source per source id, one provider per source, one manifest per assembly, one status per file."""
    rows = table_rows(engine)
    keys = {
        "api_sources": ("source_id",),
        "api_provider": ("uuid",),
        "reporting_common_costusagereportmanifest": ("provider_id", "assembly_id"),
        "reporting_common_costusagereportstatus": ("manifest_id", "report_name"),
        "ocp_payload_upload": ("request_id",),
    }
    for name, cols in keys.items():
        counted = Counter(tuple(r[c] for c in cols) for r in rows[name])
        assert all(n == 1 for n in counted.values()), f"{name} duplicated: {counted.most_common(3)}"
    linked = Counter(r["koku_uuid"] for r in rows["api_sources"] if r["koku_uuid"])
    assert all(n == 1 for n in linked.values()) and set(linked) == {p["uuid"] for p in rows["api_provider"]}


def ingest_definitions() -> dg.Definitions:
    """``provider_month_ingest`` over the database, store and buckets the fault test gives in the environment."""
    from koku_dagster.assets.ingest import INGEST_ASSETS, provider_month_ingest
    from koku_dagster.resources import ApplicationDatabase
    from tests.resources import cloud_apis_resource, ingestion_resource, object_store_resource

    home = os.environ.get("FAULT_HOME", "")
    return dg.Definitions(
        assets=INGEST_ASSETS,
        jobs=[provider_month_ingest, busy_payload_job],
        resources={
            "app_db": ApplicationDatabase(database_url=os.environ.get("FAULT_DB_URL", "sqlite://")),
            "object_store": object_store_resource(f"file://{home}", os.environ.get("FAULT_BUCKETS", home)),
            "ingestion": ingestion_resource(home),
            "cloud_apis": cloud_apis_resource(),
        },
    )


defs = ingest_definitions()
