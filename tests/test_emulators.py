"""The cloud emulators of the harness, driven through the official SDKs (no mocks): Azurite with
service-principal tokens from the Azure stand-in over HTTPS, the Cost Management exports stand-in,
and the BigQuery emulator with a day-partitioned billing export table."""

from __future__ import annotations

import base64
import csv
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.costmanagement import CostManagementClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from google.cloud import bigquery

from koku_devtools.cloud_exports import create_gcp_billing_table, load_gcp_export, upload_nise_azure
from koku_devtools.nise_reports import generate
from koku_devtools.services import AzureStandIn, Azurite, LocalBigQuery, LocalTls, storage_account_id
from koku_devtools.services.azure_standin import STORAGE_AUDIENCE

TENANT, CLIENT, SECRET = "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc", "koku-app", "s3cret-value"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
SCOPE = f"/subscriptions/{SUBSCRIPTION}"
CENT = Decimal("0.01")


def _credential(standin: AzureStandIn, tls: LocalTls, secret: str = SECRET) -> ClientSecretCredential:
    return ClientSecretCredential(
        TENANT, CLIENT, secret, authority=standin.authority_host, disable_instance_discovery=True,
        connection_verify=str(tls.ca_path),
    )  # fmt: skip


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture(scope="module")
def app(azure_standin: AzureStandIn) -> None:
    azure_standin.register_app(TENANT, CLIENT, SECRET)


@pytest.fixture(scope="module")
def nise_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("nise"), date(2026, 10, 1), date(2026, 10, 4), kinds=("azure", "gcp"))


# --------------------------------------------------------------------------- Azure


@pytest.mark.usefixtures("app")
def test_blob_storage_with_client_secret_credential(azurite: Azurite, azure_standin: AzureStandIn,
                                                    local_tls: LocalTls) -> None:  # fmt: skip
    assert azurite.blob_url.startswith("https://") and azurite.started_in is not None and azurite.started_in < 30
    credential = _credential(azure_standin, local_tls)
    token = credential.get_token(f"{STORAGE_AUDIENCE}/.default").token
    claims = _claims(token)
    assert claims["aud"] == STORAGE_AUDIENCE and claims["tid"] == TENANT and claims["appid"] == CLIENT
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert int(claims["nbf"]) <= datetime.now(UTC).timestamp() < int(claims["exp"])  # type: ignore[call-overload]

    service = BlobServiceClient(azurite.blob_url, credential=credential, connection_verify=str(local_tls.ca_path))
    container = service.create_container("oauth-upload")
    container.upload_blob("exports/a/one.csv", b"a,b\n1,2\n")
    container.upload_blob("exports/b/two.csv", b"a,b\n3,4\n")
    assert [b.name for b in container.list_blobs(name_starts_with="exports/")] == [
        "exports/a/one.csv", "exports/b/two.csv"
    ]  # fmt: skip
    assert container.download_blob("exports/b/two.csv").readall() == b"a,b\n3,4\n"
    # The same data through the account's shared key (how the loaders write).
    assert azurite.service_client().get_container_client("oauth-upload").exists()


@pytest.mark.usefixtures("app")
def test_wrong_credentials_are_refused(azurite: Azurite, azure_standin: AzureStandIn, local_tls: LocalTls) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215: Invalid client secret"):
        _credential(azure_standin, local_tls, secret="wrong").get_token(f"{STORAGE_AUDIENCE}/.default")
    token_url = f"{azure_standin.url}/{TENANT}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "wrong",
            "scope": f"{STORAGE_AUDIENCE}/.default"}  # fmt: skip
    answer = requests.post(token_url, data=form, verify=str(local_tls.ca_path), timeout=10)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    answer = requests.post(token_url, data={**form, "client_id": "nobody"}, verify=str(local_tls.ca_path), timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"

    # A blob request with the refused credential fails (the storage SDK retries a failed token request with
    # its request back-off, ~90 s by default: hence retry_total=0); Azurite refuses a token of another audience.
    bad = BlobServiceClient(azurite.blob_url, credential=_credential(azure_standin, local_tls, secret="wrong"),
                            connection_verify=str(local_tls.ca_path), retry_total=0)  # fmt: skip
    with pytest.raises(ClientAuthenticationError):
        list(bad.list_containers())
    wrong_audience = azure_standin.issue_token(TENANT, CLIENT, azure_standin.management_url)
    answer = requests.get(f"{azurite.blob_url}?comp=list", headers={"Authorization": f"Bearer {wrong_audience}",
                          "x-ms-version": "2025-01-05"}, verify=str(local_tls.ca_path), timeout=10)  # fmt: skip
    assert answer.status_code == 403 and "Invalid token audience" in answer.text


@pytest.mark.usefixtures("app")
def test_cost_management_exports(azure_standin: AzureStandIn, local_tls: LocalTls) -> None:
    account_id = storage_account_id(SUBSCRIPTION, "koku-rg", "devstoreaccount1")
    azure_standin.add_export(SCOPE, "koku-daily", storage_account_resource_id=account_id, container="costs",
                             root_folder_path="exports/koku")  # fmt: skip
    client = CostManagementClient(
        _credential(azure_standin, local_tls), base_url=azure_standin.management_url,
        credential_scopes=[azure_standin.management_scope], connection_verify=str(local_tls.ca_path),
    )  # fmt: skip
    (export,) = client.exports.list(SCOPE).value
    destination = export.delivery_info.destination
    assert (export.name, destination.resource_id, destination.container, destination.root_folder_path) == (
        "koku-daily", account_id, "costs", "exports/koku"
    )  # fmt: skip
    assert export.definition.type == "ActualCost" and export.definition.data_set.granularity == "Daily"
    assert client.exports.get(SCOPE, "koku-daily").delivery_info.destination.container == "costs"
    assert client.exports.list(f"/subscriptions/{'0' * 8}-0000-0000-0000-000000000000").value == []
    azure_standin.remove_export(SCOPE, "koku-daily")
    assert client.exports.list(SCOPE).value == []
    with pytest.raises(HttpResponseError) as missing:
        client.exports.get(SCOPE, "koku-daily")
    assert missing.value.status_code == 404

    # No token, or a storage token, is refused as ARM refuses it.
    url = f"{azure_standin.management_url}{SCOPE}/providers/Microsoft.CostManagement/exports?api-version=2023-03-01"
    storage_token = azure_standin.issue_token(TENANT, CLIENT, STORAGE_AUDIENCE)
    for headers in ({}, {"Authorization": f"Bearer {storage_token}"}):
        answer = requests.get(url, headers=headers, verify=str(local_tls.ca_path), timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_nise_azure_export_in_blob_storage(azurite: Azurite, nise_exports: dict[str, Path]) -> None:
    (csv_path,) = sorted(nise_exports["azure"].rglob("*.csv"))
    container: ContainerClient = azurite.service_client().create_container("nise-azure")
    (run,) = upload_nise_azure(container, nise_exports["azure"], export_name="koku", root_folder_path="/root/dir/",
                               parts=2)  # fmt: skip
    assert run.directory == "root/dir/koku/20261001-20261031"
    assert run.manifest_name == f"{run.directory}/{run.run_id}/manifest.json"
    manifest = json.loads(container.download_blob(run.manifest_name).readall())
    assert [b["blobName"] for b in manifest["blobs"]] == list(run.blob_names) == [
        f"{run.directory}/{run.run_id}/part_0_0001.csv", f"{run.directory}/{run.run_id}/part_0_0002.csv"
    ]  # fmt: skip
    assert manifest["runInfo"]["runId"] == run.run_id and manifest["exportConfig"]["exportName"] == "koku"

    with csv_path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    uploaded: list[list[str]] = []
    for name in run.blob_names:
        part_header, *part_rows = list(csv.reader(container.download_blob(name).readall().decode().splitlines()))
        assert part_header == header
        uploaded += part_rows
    assert uploaded == rows and manifest["dataRowCount"] == len(rows)

    (plain,) = upload_nise_azure(container, nise_exports["azure"], export_name="old", with_manifest=False)
    assert plain.manifest_name is None and plain.blob_names == (f"old/20261001-20261031/{csv_path.name}",)
    assert container.download_blob(plain.blob_names[0]).readall() == csv_path.read_bytes()


# --------------------------------------------------------------------------- BigQuery


def _raw_costs_by_day(path: Path) -> dict[date, Decimal]:
    totals: dict[date, Decimal] = defaultdict(Decimal)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            totals[date.fromisoformat(row["partition_date"])] += Decimal(row["cost"])
    return dict(totals)


def _costs_by_day(client: bigquery.Client, table: str) -> dict[date, tuple[int, Decimal, datetime]]:
    sql = (
        "SELECT DATE(_PARTITIONTIME) AS day, COUNT(*) AS n, SUM(cost) AS cost, MAX(export_time) AS exported "
        f"FROM `{table}` GROUP BY DATE(_PARTITIONTIME) ORDER BY day"
    )
    frame = client.query(sql).result().to_arrow(create_bqstorage_client=False).to_pylist()
    return {r["day"]: (r["n"], Decimal(repr(r["cost"])), r["exported"]) for r in frame}


def test_bigquery_day_partitioned_billing_table(local_bigquery: LocalBigQuery) -> None:
    assert local_bigquery.started_in is not None and local_bigquery.started_in < 30
    client = local_bigquery.client()
    table = f"{local_bigquery.project}.ddl_billing.gcp_billing_export_resource_v1_0A0B0C_000000_000000"
    client.create_dataset("ddl_billing")
    client.query_and_wait(
        f"CREATE TABLE `{table}` (cost FLOAT64, export_time TIMESTAMP, labels ARRAY<STRUCT<key STRING, value STRING>>) "
        "PARTITION BY _PARTITIONDATE"
    )
    client.query_and_wait(
        f"INSERT INTO `{table}` (_PARTITIONTIME, cost, export_time, labels) VALUES "
        "(TIMESTAMP '2026-10-01', 1.25, TIMESTAMP '2026-10-02 03:00:00', [STRUCT('app' AS key, 'koku' AS value)]), "
        "(TIMESTAMP '2026-10-01', 0.75, TIMESTAMP '2026-10-02 04:00:00', []), "
        "(TIMESTAMP '2026-10-02', 2.5, TIMESTAMP '2026-10-03 03:00:00', [])"
    )
    assert client.get_table(table).time_partitioning.type_ == "DAY"
    assert _costs_by_day(client, table) == {
        date(2026, 10, 1): (2, Decimal("2.0"), datetime(2026, 10, 2, 4, tzinfo=UTC)),
        date(2026, 10, 2): (1, Decimal("2.5"), datetime(2026, 10, 3, 3, tzinfo=UTC)),
    }


def test_nise_gcp_export_in_bigquery(local_bigquery: LocalBigQuery, nise_exports: dict[str, Path]) -> None:
    (csv_path,) = sorted(nise_exports["gcp"].rglob("*.csv"))
    client = local_bigquery.client()
    table = f"{local_bigquery.project}.nise_billing.gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9"
    create_gcp_billing_table(client, table)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        raw_rows = sum(1 for _ in csv.DictReader(fh))
    assert load_gcp_export(client, table, csv_path) == raw_rows
    raw = _raw_costs_by_day(csv_path)
    loaded = _costs_by_day(client, table)
    assert loaded.keys() == raw.keys() and len(raw) >= 3
    for day, (_, cost, _) in loaded.items():
        assert abs(cost - raw[day]) < CENT / 2, day

    # Nested fields keep the export's shape.
    sql = f"SELECT labels, credits, project, invoice.month AS month FROM `{table}` WHERE ARRAY_LENGTH(labels) > 0"
    row = next(iter(client.query(sql).result()))
    assert set(row["labels"][0]) == {"key", "value"} and row["month"] == "202610" and "labels" in row["project"]

    # A re-export of one day: more rows in that partition, with a later export time.
    first = min(raw)
    later = datetime(2026, 11, 2, 6, tzinfo=UTC)
    reexported = load_gcp_export(client, table, csv_path, export_time=later, days={first})
    after = _costs_by_day(client, table)
    assert after[first][0] == loaded[first][0] + reexported and after[first][2] == later
    assert all(after[d] == loaded[d] for d in loaded if d != first)

    flat = f"{local_bigquery.project}.nise_billing.gcp_billing_export_v1_unpartitioned"
    create_gcp_billing_table(client, flat, day_partitioned=False)
    assert load_gcp_export(client, flat, csv_path) == raw_rows
    assert client.get_table(flat).time_partitioning is None
    tables = {t.table_id for t in client.list_tables(f"{local_bigquery.project}.nise_billing")}
    assert tables == {table.rsplit(".", 1)[1], flat.rsplit(".", 1)[1]}  # the loader's scratch tables are gone
