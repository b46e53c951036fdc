"""The cloud side of ``make demo``: emulators holding the demo reports that the real source types read.

- AWS: moto (S3 and STS) with the nise CUR in bucket ``demo-cur``, and the CUR API stand-in describing it;
- Azure: Azurite (Blob Storage over HTTPS, service-principal tokens) and the Entra ID / Cost Management
  stand-in, with the nise export written as an export run of ``koku-demo``;
- GCP: the BigQuery emulator with the nise export in a day-partitioned billing export table.

:func:`start_demo_clouds` starts them, loads the reports, and returns the settings ``dagster dev`` needs
and the sources to create.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from koku_devtools.cloud_exports import create_gcp_billing_table, load_gcp_export, upload_nise_azure
from koku_devtools.services import AzureStandIn, Azurite, CurStandIn, LocalBigQuery, MotoServer, make_local_tls
from koku_devtools.services.azure_standin import storage_account_id
from koku_devtools.services.processes import Service

AWS_BUCKET = "demo-cur"
AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/koku-demo"
AZURE_TENANT = "0f1e2d3c-aaaa-4bbb-8ccc-0000000000de"
AZURE_CLIENT = "koku-demo-app"
AZURE_SECRET = "demo-client-secret"  # a demo value: the emulators accept it, nothing else does
AZURE_SUBSCRIPTION = "11111111-2222-3333-4444-0000000000de"
AZURE_RESOURCE_GROUP = "demo-rg"
AZURE_EXPORT = "koku-demo"
GCP_PROJECT = "koku-demo"
GCP_DATASET = "billing"
GCP_TABLE = "gcp_billing_export_resource_v1_0DE0DE_000000_000000"


@dataclass
class DemoClouds:
    """The running emulators, the settings that point the code location at them, and the demo sources."""

    services: list[Service | CurStandIn] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: ``(stand-in kind, source name, details)`` for ``StandInAdmin.create_cost_source``.
    sources: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()


def _aws(clouds: DemoClouds, home: Path, cur_dir: Path) -> None:
    moto = MotoServer(workdir=home / "moto").start()
    clouds.services.append(moto)
    session = boto3.session.Session(
        aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key, region_name=moto.region
    )
    s3 = session.client("s3", endpoint_url=moto.endpoint_url)
    s3.create_bucket(Bucket=AWS_BUCKET)
    for path in sorted(p for p in cur_dir.rglob("*") if p.is_file()):
        s3.upload_file(str(path), AWS_BUCKET, path.relative_to(cur_dir).as_posix())
    cur = CurStandIn()
    clouds.services.append(cur)
    cur.reports = [
        {"ReportName": "cur", "TimeUnit": "HOURLY", "Format": "textORcsv", "Compression": "GZIP",
         "AdditionalSchemaElements": ["RESOURCES"], "S3Bucket": AWS_BUCKET, "S3Prefix": "", "S3Region": moto.region}
    ]  # fmt: skip
    clouds.env |= {
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "AWS_ENDPOINT_URL_COST_AND_USAGE_REPORT_SERVICE": cur.url,
        "AWS_ACCESS_KEY_ID": moto.access_key,
        "AWS_SECRET_ACCESS_KEY": moto.secret_key,
        "AWS_DEFAULT_REGION": moto.region,
    }
    clouds.sources.append(
        ("aws", "Demo AWS (S3)", {"bucket": AWS_BUCKET, "role_arn": AWS_ROLE_ARN, "external_id": "demo-external-id"})
    )


def _azure(clouds: DemoClouds, home: Path, export_dir: Path) -> None:
    tls = make_local_tls(home / "tls")
    azurite = Azurite(workdir=home / "azurite", tls=tls).start()
    clouds.services.append(azurite)
    standin = AzureStandIn(tls).start()
    clouds.services.append(standin)
    standin.register_app(AZURE_TENANT, AZURE_CLIENT, AZURE_SECRET)
    scope = f"/subscriptions/{AZURE_SUBSCRIPTION}"
    account = azurite.account_name
    standin.add_export(
        scope,
        AZURE_EXPORT,
        storage_account_resource_id=storage_account_id(AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, account),
        container="costs",
        root_folder_path="exports",
    )
    container = azurite.service_client().create_container("costs")
    upload_nise_azure(container, export_dir, export_name=AZURE_EXPORT, root_folder_path="exports")
    clouds.env |= {
        "KOKU_AZURE_AUTHORITY_HOST": standin.authority_host,
        "KOKU_AZURE_MANAGEMENT_URL": standin.management_url,
        "KOKU_AZURE_BLOB_URL": azurite.blob_url.replace(f"/{account}", "/{account}"),
        # The emulators' certificates come from a private CA.
        "REQUESTS_CA_BUNDLE": str(tls.ca_path),
        "SSL_CERT_FILE": str(tls.ca_path),
    }
    details = {
        "resource_group": AZURE_RESOURCE_GROUP, "storage_account": account, "subscription_id": AZURE_SUBSCRIPTION,
        "tenant_id": AZURE_TENANT, "client_id": AZURE_CLIENT, "client_secret": AZURE_SECRET,
    }  # fmt: skip
    clouds.sources.append(("azure", "Demo Azure (Blob Storage)", details))


def _gcp(clouds: DemoClouds, home: Path, export_dir: Path) -> None:
    bigquery = LocalBigQuery(workdir=home / "bigquery", project=GCP_PROJECT).start()
    clouds.services.append(bigquery)
    client = bigquery.client()
    table = f"{GCP_PROJECT}.{GCP_DATASET}.{GCP_TABLE}"
    create_gcp_billing_table(client, table)
    for csv_path in sorted(export_dir.rglob("*.csv")):
        load_gcp_export(client, table, csv_path)
    clouds.env["KOKU_GCP_BIGQUERY_URL"] = bigquery.endpoint
    clouds.sources.append(("gcp", "Demo GCP (BigQuery)", {"dataset": GCP_DATASET, "project_id": GCP_PROJECT}))


@contextlib.contextmanager
def demo_clouds(home: Path, report_dirs: dict[str, Path]) -> Iterator[DemoClouds]:
    """Start the emulators afresh under ``home`` and load ``report_dirs`` (nise's ``aws``, ``azure``, ``gcp``
    output) into them."""
    shutil.rmtree(home, ignore_errors=True)  # the previous run's containers, tables and certificates
    clouds = DemoClouds()
    try:
        _aws(clouds, home, report_dirs["aws"])
        _azure(clouds, home, report_dirs["azure"])
        _gcp(clouds, home, report_dirs["gcp"])
        yield clouds
    finally:
        clouds.stop()
