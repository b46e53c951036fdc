"""The Azure Blob Storage reader and its reachability check against real emulators: Azurite (Blob Storage over
HTTPS with service-principal tokens) and the Entra ID / Cost Management stand-in. No SDK mocks."""

from __future__ import annotations

import csv
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from azure.storage.blob import ContainerClient

from koku_dagster.assets.ingest import INGEST_ASSETS
from koku_dagster.ingest import workflow
from koku_dagster.ingest.reachability import check_providers
from koku_dagster.providers import POLLED_TYPES, azure_blob
from koku_dagster.providers.azure import AZURE, AZURE_LOCAL
from koku_dagster.providers.base import CloudEndpoints, ProviderContext, ReportAccess, Unreachable
from koku_dagster.reports.errors import IngestError, ManifestError, ReportFileMissingError, UnsafeReportPathError
from koku_devtools.cloud_exports import blob_path, upload_azure_export, upload_nise_azure
from koku_devtools.nise_reports import generate
from koku_devtools.services import AzureStandIn, Azurite, LocalTls, storage_account_id
from tests.conftest import Harness
from tests.resources import ingest_resources
from tests.test_ingest_cloud_types import ALL_PASSED, _checks, _raw_azure_cost, _summary

TENANT, CLIENT, SECRET = "5d1c2b3a-0000-4aaa-8bbb-0123456789ab", "koku-reader-app", "Reader-Secret-Value-42"
RESOURCE_GROUP = "koku-rg"
MONTH = date(2026, 10, 1)
CENT = Decimal("0.01")
_counter = iter(range(1, 10_000))


@pytest.fixture(autouse=True)
def private_ca(local_tls: LocalTls, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader trusts the emulators' CA as production code trusts a private CA: through the environment."""
    for name, value in local_tls.client_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def app(azure_standin: AzureStandIn) -> None:
    azure_standin.register_app(TENANT, CLIENT, SECRET)


@pytest.fixture(scope="module")
def nise_azure(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("nise"), date(2026, 10, 1), date(2026, 10, 4), kinds=("azure",))["azure"]


@pytest.fixture
def endpoints(azurite: Azurite, azure_standin: AzureStandIn) -> CloudEndpoints:
    return CloudEndpoints(
        azure_authority_host=azure_standin.authority_host,
        azure_management_url=azure_standin.management_url,
        azure_blob_url=f"https://127.0.0.1:{azurite.port}/{{account}}",
    )


class Export:
    """One source's export: its own subscription (scope), container and export name."""

    def __init__(self, azurite: Azurite, standin: AzureStandIn, root: str = "exports/koku") -> None:
        n = next(_counter)
        self.subscription = f"{n:08d}-1111-4222-8333-444455556666"
        self.scope = f"/subscriptions/{self.subscription}"
        self.name, self.root = f"koku-daily-{n}", root
        self.container: ContainerClient = azurite.service_client().create_container(f"costs-{n}")
        self.standin = standin
        self.account_id = storage_account_id(self.subscription, RESOURCE_GROUP, azurite.account_name)
        self.register()

    def register(self, container: str | None = None) -> None:
        self.standin.add_export(self.scope, self.name, storage_account_resource_id=self.account_id,
                                container=container or self.container.container_name,
                                root_folder_path=self.root)  # fmt: skip

    @property
    def folder(self) -> str:
        return blob_path(self.root, self.name, "20261001-20261031")

    def credentials(self, **changes: str) -> dict[str, str]:
        creds = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
                 "subscription_id": self.subscription}  # fmt: skip
        return creds | changes

    def ctx(self, billing: dict[str, Any] | None = None, **credentials: str) -> ProviderContext:
        data_source = {"resource_group": RESOURCE_GROUP, "storage_account": "devstoreaccount1",
                       "export_name": self.name} | (billing or {})  # fmt: skip
        return ProviderContext(str(uuid.uuid4()), "az", "Azure", "org1234567", self.credentials(**credentials),
                               data_source, setup_complete=False, active=True, paused=False)  # fmt: skip


@pytest.fixture
def export(azurite: Azurite, azure_standin: AzureStandIn, app: None) -> Iterator[Export]:
    made = Export(azurite, azure_standin)
    yield made
    azure_standin.remove_export(made.scope, made.name)


def _access(endpoints: CloudEndpoints) -> ReportAccess:
    def no_s3(*_: Any) -> Any:
        raise AssertionError("no S3 for Azure")

    return ReportAccess((), no_s3, endpoints)


def _rewrite(source: Path, target_dir: Path, keep: int) -> Path:
    """A copy of a nise export month with every ``keep``-th row (a later export with other figures)."""
    with source.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    target = target_dir / "cost" / source.parent.name / f"costreport_{uuid.uuid4()}.csv"
    target.parent.mkdir(parents=True)
    with target.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows[::keep]])
    return target


# --------------------------------------------------------------------------- through the Dagster assets


def _materialize(
    harness: Harness, instance: dg.DagsterInstance, uuid_: str, endpoints: CloudEndpoints
) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions("providers", [uuid_])
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=dg.MultiPartitionKey({"provider": uuid_, "billing_month": MONTH.isoformat()}),
        resources=ingest_resources(
            harness,
            azure_authority_host=endpoints.azure_authority_host,
            azure_management_url=endpoints.azure_management_url,
            azure_blob_url=endpoints.azure_blob_url,
        ),
        instance=instance,
        raise_on_error=False,
    )


def _meta(result: dg.ExecuteInJobResult, asset: str) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def _focus_billed(harness: Harness, uuid_: str) -> Decimal:
    folder = harness.store.local_root / "data/focus" / f"source={uuid_}" / "year=2026" / "month=10"
    files = [str(p) for p in sorted(folder.glob("*.parquet"))]
    with duckdb.connect() as con:
        (total,) = con.execute(f"SELECT sum(BilledCost) FROM read_parquet({files})").fetchone()  # type: ignore[misc]
    return Decimal(str(total))


def _create_source(harness: Harness, export: Export, endpoints: CloudEndpoints) -> str:
    """The source through Platform Sources events, the provider, and its first (successful) reachability check."""
    harness.admin.create_cost_source(
        "azure", "blob", resource_group=RESOURCE_GROUP, storage_account="devstoreaccount1",
        export_name=export.name, **export.credentials(),
    )  # fmt: skip
    harness.settle()
    (row,) = harness.table("api_sources", "source_id")
    assert row["koku_uuid"] and row["source_type"] == "Azure", row["status"]
    (outcome,) = check_providers(harness.engine, _access(endpoints), [row["koku_uuid"]])
    assert outcome.reachable and outcome.recorded, outcome
    return str(row["koku_uuid"])


def test_azure_blob_export_through_the_assets(harness: Harness, export: Export, endpoints: CloudEndpoints,
                                              nise_azure: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    assert "Azure" in POLLED_TYPES
    (first,) = upload_nise_azure(export.container, nise_azure, export_name=export.name, root_folder_path=export.root,
                                 parts=2)  # fmt: skip
    uuid_ = _create_source(harness, export, endpoints)
    raw = _raw_azure_cost(nise_azure)
    with dg.instance_for_test() as instance:
        result = _materialize(harness, instance, uuid_, endpoints)
        assert result.success and _checks(result) == ALL_PASSED
        assert _meta(result, "report_manifest")["assembly_id"] == first.run_id
        assert _meta(result, "report_files") | {"path": None} == {
            "assembly_id": first.run_id, "files": 2, "fetched": 2, "unchanged": 0, "path": None,
            "bytes": sum(export.container.get_blob_client(n).get_blob_properties().size for n in first.blob_names),
        }  # fmt: skip
        cost, rows = _summary(harness, "reporting_azurecostentrylineitem_daily_summary", uuid_,
                              "sum(CAST(pretax_cost AS DECIMAL(38, 10))), count(*)")  # fmt: skip
        assert rows > 0 and abs(Decimal(cost) - raw) < CENT and abs(_focus_billed(harness, uuid_) - raw) < CENT

        # The same assembly again (forced): the blobs' etags are unchanged, so nothing is downloaded again.
        place = workflow.Workplace(harness.engine, harness.store, _access(endpoints), tmp_path / "work",
                                   tmp_path / "warehouse.duckdb", retain_num_months=4)  # fmt: skip
        assert workflow.find_manifest(place, uuid_, MONTH, force=True).manifest is not None
        fetched = workflow.fetch_files(place, uuid_, MONTH)
        assert (fetched.assembly_id, fetched.fetched, fetched.unchanged) == (first.run_id, 0, 2)

        time.sleep(1.1)  # Blob Storage keeps last-modified times in whole seconds
        later = _rewrite(next(nise_azure.rglob("*.csv")), tmp_path / "later", keep=3)
        second = upload_azure_export(export.container, later, export_name=export.name, period=later.parent.name,
                                     root_folder_path=export.root)  # fmt: skip
        again = _materialize(harness, instance, uuid_, endpoints)
        assert again.success and _checks(again) == ALL_PASSED
        assert _meta(again, "report_manifest")["assembly_id"] == second.run_id != first.run_id
        new_raw = _raw_azure_cost(later.parent)
        (cost,) = _summary(harness, "reporting_azurecostentrylineitem_daily_summary", uuid_,
                           "sum(CAST(pretax_cost AS DECIMAL(38, 10)))")  # fmt: skip
        assert abs(Decimal(cost) - new_raw) < CENT < raw - new_raw
        assert abs(_focus_billed(harness, uuid_) - new_raw) < CENT
        manifests = [m for m in harness.table("reporting_common_costusagereportmanifest", "id")
                     if m["provider_id"] == uuid_]  # fmt: skip
        assert [m["assembly_id"] for m in manifests] == [second.run_id]
        archive = harness.store.local_root / "data/csv/org1234567/Azure" / f"source={uuid_}" / "year=2026/month=10"
        assert sorted(p.name for p in archive.iterdir()) == ["part_0_0001.csv"]
        events = json.dumps([str(e) for r in (result, again) for e in r.all_events])
    stored = json.dumps([harness.table(t, "id") for t in ("reporting_common_costusagereportmanifest",)], default=str)
    assert SECRET not in events + stored + caplog.text
    status = harness.table("api_sources", "source_id")[0]["status"]
    assert "unavailable" not in json.dumps(status)


# --------------------------------------------------------------------------- the reader


def test_export_lookup_and_the_newest_csv_without_manifest(export: Export, endpoints: CloudEndpoints,
                                                         nise_azure: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(azure_blob, "CHUNK_BYTES", 1024)  # downloads in many small chunks
    assert AZURE.report_source(export.ctx(), _access(endpoints)).find_manifest(MONTH) is None  # nothing exported yet
    (old,) = upload_nise_azure(export.container, nise_azure, export_name=export.name, root_folder_path=export.root,
                               with_manifest=False)  # fmt: skip
    time.sleep(1.1)
    later = _rewrite(next(nise_azure.rglob("*.csv")), tmp_path, keep=2)
    (new,) = upload_nise_azure(export.container, tmp_path, export_name=export.name, root_folder_path=export.root,
                               with_manifest=False)  # fmt: skip
    export.container.upload_blob(blob_path(export.root, export.name, "20261101-20261130", "nov.csv"), b"Date\n")
    reader = AZURE.report_source(export.ctx({"export_name": None}), _access(endpoints))  # found by storage account
    assert isinstance(reader, azure_blob.BlobExports) and SECRET not in repr(reader) + repr(reader.settings)
    manifest = reader.find_manifest(MONTH)
    assert manifest is not None and [f.key for f in manifest.files] == list(new.blob_names) != list(old.blob_names)
    assert manifest.assembly_id == later.stem.removeprefix("costreport_") and manifest.report_name == export.name
    assert reader.etag(new.blob_names[0]) == str(
        export.container.get_blob_client(new.blob_names[0]).get_blob_properties().etag).strip('"')  # fmt: skip
    assert later.stat().st_size > 10 * azure_blob.CHUNK_BYTES
    with reader.open_file(new.blob_names[0]) as fh:
        assert fh.read(100) + fh.read() == later.read_bytes()
    with pytest.raises(ReportFileMissingError):
        reader.etag(blob_path(export.folder, "gone.csv"))

    # Container and directory named by the billing source: the exports API is not asked.
    export.standin.remove_export(export.scope, export.name)
    named = {"container": export.container.container_name, "directory": export.root}
    direct = AZURE.report_source(export.ctx(named), _access(endpoints)).find_manifest(MONTH)
    assert direct is not None and direct.assembly_id == manifest.assembly_id


def test_hostile_manifests_and_caps(export: Export, endpoints: CloudEndpoints, nise_azure: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    run = upload_nise_azure(export.container, nise_azure, export_name=export.name, root_folder_path=export.root)[0]
    assert run.manifest_name is not None
    reader = AZURE.report_source(export.ctx(), _access(endpoints))
    for hostile in ("exports/koku/../../other/x.csv", "exports/other-export/20261001-20261031/x.csv"):
        time.sleep(1.1)
        name = blob_path(export.folder, str(uuid.uuid4()), "manifest.json")
        export.container.upload_blob(name, json.dumps({"blobs": [{"blobName": hostile}]}).encode())
        with pytest.raises(UnsafeReportPathError):
            reader.find_manifest(MONTH)
        export.container.delete_blob(name)
    with pytest.raises(UnsafeReportPathError):
        reader.open_file("other/folder/file.csv")

    monkeypatch.setattr(azure_blob, "MAX_MANIFEST_BYTES", 64)
    with pytest.raises(ManifestError, match="larger than 64 bytes"):
        reader.find_manifest(MONTH)
    monkeypatch.setattr(azure_blob, "MAX_LISTED_BLOBS", 1)
    with pytest.raises(ManifestError, match="more than 1 blobs"):
        reader.find_manifest(MONTH)


# --------------------------------------------------------------------------- reachability


def test_check_reachable_failures_have_fixed_messages(export: Export, endpoints: CloudEndpoints,
                                                      azure_standin: AzureStandIn, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    access = _access(endpoints)
    AZURE.check_reachable(export.ctx(), access)  # all good
    wrong = "Wrong-Secret-Text-123"
    cases = [
        (export.ctx(client_secret=wrong), azure_blob.SECRET_MESSAGE),
        (export.ctx(client_id="nobody"), azure_blob.CLIENT_ID_MESSAGE),
        (export.ctx(tenant_id="9f9f9f9f-0000-4000-8000-000000000000"), azure_blob.TENANT_MESSAGE),
        (export.ctx({"export_name": "no-such-export"}), azure_blob.EXPORT_MESSAGE),
        (export.ctx({"storage_account": "http://evil"}), azure_blob.STORAGE_ACCOUNT_MESSAGE),
        (export.ctx({"scope": "/subscriptions/../x"}), azure_blob.SCOPE_MESSAGE),
    ]
    with caplog.at_level(logging.WARNING, logger="koku_dagster.providers.azure_blob"):
        for ctx, message in cases:
            with pytest.raises(Unreachable) as refused:
                AZURE.check_reachable(ctx, access)
            assert str(refused.value) == message and refused.value.__cause__ is None
        export.register(container="no-such-container")  # the export writes to a container that is not there
        with pytest.raises(Unreachable, match="^The storage container of the Azure cost export cannot be read"):
            AZURE.check_reachable(export.ctx(), access)
        azure_standin.remove_export(export.scope, export.name)
        with pytest.raises(Unreachable) as missing:
            AZURE.check_reachable(export.ctx(), access)
        assert str(missing.value) == azure_blob.EXPORT_MESSAGE
        with pytest.raises(IngestError) as reading:
            AZURE.report_source(export.ctx(client_secret=wrong), access).find_manifest(MONTH)
        assert str(reading.value) == azure_blob.SECRET_MESSAGE
    assert "AADSTS7000215" in caplog.text and wrong not in caplog.text and SECRET not in caplog.text

    local = ProviderContext("u", "l", "Azure-local", "org1", {}, {"storage_account": str(tmp_path / "none")},
                            setup_complete=False, active=True, paused=False)  # fmt: skip
    with pytest.raises(Unreachable, match="^The local folder of the source cannot be read.$"):
        AZURE_LOCAL.check_reachable(local, ReportAccess((tmp_path,), access.s3_client, endpoints))
