"""Azure cost exports in Blob Storage (type ``Azure``): the export lookup, the month's files, the checks.

The export (container, root folder, name) comes from the Cost Management exports API at the source's
scope, unless the billing source names its ``container`` (then ``directory`` and ``export_name`` are
taken as they are). A month is read from ``{rootFolderPath}/{export}/{YYYYMMDD-YYYYMMDD}/``: the newest
``manifest.json`` (by last modified time) lists the files (``blobs[].blobName``, from the container
root), else the newest CSV is the only file. Every SDK client has connection and read timeouts and few
retries; every failure becomes a fixed message (Koku's wording where it has one) while the raw error,
with the client secret blanked, goes to the log only.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any, BinaryIO

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import ClientSecretCredential
from azure.mgmt.costmanagement import CostManagementClient
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient, ExponentialRetry

from koku_dagster.providers.azure import export_ranges, read_manifest, uuid_in
from koku_dagster.providers.base import CloudEndpoints, ProviderContext, Unreachable
from koku_dagster.reports.errors import IngestError, ManifestError, ReportFileMissingError, UnsafeReportPathError
from koku_dagster.reports.model import Manifest, ReportFile, key_parts

log = logging.getLogger(__name__)

#: Blobs listed for one month at most; a larger listing is refused.
MAX_LISTED_BLOBS = 10_000
#: The largest ``manifest.json`` read.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Downloads go in chunks of this size (the first request included), so no blob is held whole in memory.
CHUNK_BYTES = 4 * 1024 * 1024
CONNECTION_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
#: Retries of a failed request (after the first); back-off 1 s, then 2 s.
RETRIES = 2
STORAGE_SCOPE = "https://storage.azure.com/.default"
MANIFEST_NAME = "manifest.json"
_REPORT_SUFFIXES = (".csv", ".csv.gz")

# Fixed messages (shown to the user through Platform Sources); Koku's wording where it has one.
SECRET_MESSAGE = (
    "A problem has been detected with the Azure client secret for this source. "
    "Refer to the Microsoft Azure troubleshooting guide in the cost management documentation for details."
)
CLIENT_ID_MESSAGE = (
    "The client ID was entered incorrectly for this source. Edit your Azure source and verify the client ID."
)
TENANT_MESSAGE = (
    "The tenant ID was entered incorrectly for this source. Edit your Azure source and verify the tenant ID."
)
SUBSCRIPTION_MESSAGE = (
    "Cost management requires a subscription ID for this source. Edit your Azure source to include the subscription ID."
)
EXPORT_MESSAGE = (
    "The Azure cost export cannot be found. Ensure the Storage account name, Resource group name, "
    "and Subscription ID are correct. In Azure, create a daily export task for your storage account."
)
STORAGE_ACCOUNT_MESSAGE = (
    "The storage account was entered incorrectly for this source. "
    "Edit your Azure source and verify the storage account."
)
CONTAINER_MESSAGE = (
    "The storage container of the Azure cost export cannot be read. Ensure the container exists and that "
    "the application of this source may read it (Storage Blob Data Reader role)."
)
SCOPE_MESSAGE = "The scope of the Azure cost export is not valid. Edit your Azure source and verify the scope."
UNREACHABLE_MESSAGE = "Microsoft Azure could not be reached. Cost management will try again later."
GENERAL_MESSAGE = "Azure client configuration error."

_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_SCOPE_PART = re.compile(r"^[A-Za-z0-9._:()-]+$")
_TIMEOUTS = {"connection_timeout": CONNECTION_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}
#: Entra ID error codes in a refused token request -> what was wrong.
_TOKEN_ERRORS = (
    (("AADSTS7000215", "AADSTS7000222", "invalid_client"), SECRET_MESSAGE),
    (("AADSTS700016", "unauthorized_client"), CLIENT_ID_MESSAGE),
    (("AADSTS90002", "AADSTS900023", "invalid_tenant", "tenant"), TENANT_MESSAGE),
)


class AzureUnavailable(IngestError):
    """Azure refused or could not answer; the message is one of the fixed messages above."""


def blob_path(*parts: str) -> str:
    """Path parts joined with single slashes, empty parts dropped."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _redacted(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _log_failure(what: str, exc: BaseException, secret: str) -> None:
    log.warning("Azure %s failed: %s", what, _redacted(f"{type(exc).__name__}: {exc}", secret)[:2000])


def _no_answer(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a connection failure or timeout rather than an answer."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return "Failed to establish a new connection" in str(exc) or "timed out" in str(exc)


def _token_message(exc: BaseException) -> str:
    if _no_answer(exc):
        return UNREACHABLE_MESSAGE
    text = str(exc)
    for markers, message in _TOKEN_ERRORS:
        if any(m in text for m in markers):
            return message
    return GENERAL_MESSAGE


@contextmanager
def _calling(
    what: str, secret: str, refused: str, unreachable: str = UNREACHABLE_MESSAGE, missing_key: str | None = None
) -> Iterator[None]:
    """SDK failures of ``what`` -> :class:`AzureUnavailable`: ``refused`` for an HTTP error answer,
    ``unreachable`` when no answer came; the raw error goes to the log. With ``missing_key``, a missing
    blob is :class:`ReportFileMissingError`."""
    try:
        yield
    except IngestError:
        raise
    except ResourceNotFoundError as exc:
        _log_failure(what, exc, secret)
        if missing_key is not None and getattr(exc, "error_code", None) == "BlobNotFound":
            raise ReportFileMissingError(missing_key) from None
        raise AzureUnavailable(refused) from None
    except HttpResponseError as exc:
        _log_failure(what, exc, secret)
        raise AzureUnavailable(refused) from None
    except ServiceRequestError as exc:
        _log_failure(what, exc, secret)
        raise AzureUnavailable(unreachable) from None
    except (AzureError, ValueError, OSError) as exc:
        _log_failure(what, exc, secret)
        raise AzureUnavailable(UNREACHABLE_MESSAGE if isinstance(exc, AzureError) else GENERAL_MESSAGE) from None


def _text(values: dict[str, Any], key: str) -> str:
    value = values.get(key)
    return value.strip() if isinstance(value, str) else ""


def _scope(text: str) -> str:
    parts = [p for p in text.split("/") if p]
    if not text.startswith("/") or not parts or any(p in (".", "..") or not _SCOPE_PART.match(p) for p in parts):
        raise AzureUnavailable(SCOPE_MESSAGE)
    return "/" + "/".join(parts)


def _folder(text: str, message: str) -> str:
    """A blob folder path (possibly empty) without ``..``, NUL or backslashes; ``message`` when unsafe."""
    if not text.strip("/"):
        return ""
    try:
        return "/".join(key_parts(text))
    except UnsafeReportPathError:
        raise AzureUnavailable(message) from None


@dataclass(frozen=True)
class AzureSettings:
    """A source's credentials and billing source as the reader needs them (validated)."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    subscription_id: str
    storage_account: str
    scope: str
    export_name: str
    container: str
    directory: str
    storage_only: bool

    @classmethod
    def of(cls, ctx: ProviderContext) -> AzureSettings:
        """:class:`AzureUnavailable` (fixed message) when a value is missing or malformed."""
        creds, billing = ctx.credentials, ctx.data_source
        for key, message in (("tenant_id", TENANT_MESSAGE), ("client_id", CLIENT_ID_MESSAGE),
                             ("client_secret", SECRET_MESSAGE), ("subscription_id", SUBSCRIPTION_MESSAGE)):  # fmt: skip
            if not _text(creds, key):
                raise AzureUnavailable(message)
        account = _text(billing, "storage_account")
        if not _ACCOUNT.match(account):
            raise AzureUnavailable(STORAGE_ACCOUNT_MESSAGE)
        subscription = _text(creds, "subscription_id")
        container = _text(billing, "container")
        if container and not _CONTAINER.match(container):
            raise AzureUnavailable(CONTAINER_MESSAGE)
        return cls(
            tenant_id=_text(creds, "tenant_id"),
            client_id=_text(creds, "client_id"),
            client_secret=str(creds["client_secret"]),
            subscription_id=subscription,
            storage_account=account,
            scope=_scope(_text(billing, "scope") or f"/subscriptions/{subscription}"),
            export_name=_folder(_text(billing, "export_name"), EXPORT_MESSAGE),
            container=container,
            directory=_folder(_text(billing, "directory"), EXPORT_MESSAGE),
            storage_only=billing.get("storage_only") in (True, "true", "True"),
        )


@dataclass(frozen=True)
class ExportLocation:
    """Where an export writes: ``{container}/{directory}/{name}/{YYYYMMDD-YYYYMMDD}/...``."""

    name: str
    container: str
    directory: str

    @property
    def folder(self) -> str:
        """The export folder inside the container (``directory/name``; empty when both are)."""
        return blob_path(self.directory, self.name)


class AzureClients:
    """The SDK clients of one source (one credential; its tokens are cached for the clients' lifetime)."""

    def __init__(self, settings: AzureSettings, endpoints: CloudEndpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.credential = ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret,
            authority=endpoints.azure_authority_host, disable_instance_discovery=True,
            retry_total=RETRIES, **_TIMEOUTS,
        )  # fmt: skip
        self._service: BlobServiceClient | None = None

    def check_token(self) -> None:
        """A storage token can be obtained; else :class:`AzureUnavailable` saying which credential is wrong."""
        try:
            self.credential.get_token(STORAGE_SCOPE)
        except (AzureError, ValueError, OSError) as exc:
            _log_failure("token request", exc, self.settings.client_secret)
            raise AzureUnavailable(_token_message(exc)) from None

    def find_export(self) -> ExportLocation:
        """The export named ``export_name``, else the first writing to the storage account (exports API)."""
        s = self.settings
        if s.container:
            return ExportLocation(s.export_name, s.container, s.directory)
        management = self.endpoints.azure_management_url.rstrip("/")
        client = CostManagementClient(
            self.credential, base_url=management, credential_scopes=[f"{management}/.default"],
            retry_total=RETRIES, **_TIMEOUTS,
        )  # fmt: skip
        with client, _calling("exports list", s.client_secret, EXPORT_MESSAGE):
            exports: list[Any] = list(client.exports.list(s.scope).value or [])
        return _export_location(exports, s)

    def container(self, name: str) -> ContainerClient:
        if self._service is None:
            self._service = BlobServiceClient(
                self.endpoints.azure_blob_url.format(account=self.settings.storage_account),
                credential=self.credential,
                max_single_get_size=CHUNK_BYTES,
                max_chunk_get_size=CHUNK_BYTES,
                retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=RETRIES),
                connection_timeout=CONNECTION_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
            )
        return self._service.get_container_client(name)


def _names_account(resource_id: Any, account: str) -> bool:
    parts = str(resource_id or "").strip("/").lower().split("/")
    return len(parts) >= 2 and parts[-2] == "storageaccounts" and parts[-1] == account.lower()


def _export_location(exports: list[Any], s: AzureSettings) -> ExportLocation:
    """The chosen export's destination, validated; :class:`AzureUnavailable` when there is none."""
    if s.export_name:
        chosen = [e for e in exports if str(e.name or "").lower() == s.export_name.lower()]
    else:
        chosen = [e for e in exports if _names_account(_destination(e, "resource_id"), s.storage_account)]
    if not chosen:
        raise AzureUnavailable(EXPORT_MESSAGE)
    export = chosen[0]
    container = str(_destination(export, "container") or "")
    name = str(export.name or "")
    if not _CONTAINER.match(container) or not name or "/" in name:
        raise AzureUnavailable(EXPORT_MESSAGE)
    return ExportLocation(
        _folder(name, EXPORT_MESSAGE),
        container,
        _folder(str(_destination(export, "root_folder_path") or ""), EXPORT_MESSAGE),
    )


def _destination(export: Any, attribute: str) -> Any:
    delivery = getattr(export, "delivery_info", None)
    return getattr(getattr(delivery, "destination", None), attribute, None)


class _ChunkStream(io.RawIOBase):
    """A blob download read chunk by chunk (one chunk in memory at a time)."""

    def __init__(self, chunks: Iterator[bytes], key: str, secret: str) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._key = key
        self._secret = secret

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            with _calling(f"download of {self._key}", self._secret, UNREACHABLE_MESSAGE):
                chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def _signature_id(*parts: str) -> str:
    """An assembly id for an export without a UUID in its names: stable while the blob is unchanged."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))


class BlobExports:
    """A source's Azure cost exports in Blob Storage (a :class:`~koku_dagster.reports.model.ReportSource`).

    Report keys are blob names from the container root; each must lie inside the export folder.
    """

    def __init__(self, settings: AzureSettings, endpoints: CloudEndpoints) -> None:
        self.settings = settings
        self.clients = AzureClients(settings, endpoints)
        self._location: ExportLocation | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_provider(cls, ctx: ProviderContext, endpoints: CloudEndpoints) -> BlobExports:
        return cls(AzureSettings.of(ctx), endpoints)

    def __repr__(self) -> str:
        return f"BlobExports(account={self.settings.storage_account!r})"

    @property
    def location(self) -> ExportLocation:
        """The export's location (token checked and exports API asked once per reader)."""
        with self._lock:
            if self._location is None:
                self.clients.check_token()
                self._location = self.clients.find_export()
            return self._location

    def _container(self) -> ContainerClient:
        return self.clients.container(self.location.container)

    def _calling(self, what: str, missing_key: str | None = None) -> Any:
        """Blob Storage failures: refused -> container message, no answer -> storage account message."""
        secret = self.settings.client_secret
        return _calling(what, secret, CONTAINER_MESSAGE, STORAGE_ACCOUNT_MESSAGE, missing_key=missing_key)

    def blob_name(self, key: str) -> str:
        """The blob of a report key; :class:`UnsafeReportPathError` unless it lies inside the export folder."""
        name = "/".join(key_parts(key))
        folder = self.location.folder
        if folder and not name.startswith(folder + "/"):
            raise UnsafeReportPathError(f"refusing report key {key!r}: it lies outside the export folder")
        return name

    def _month_blobs(self, month: date) -> list[BlobProperties]:
        """The blobs in the month's folders (either range name); at most :data:`MAX_LISTED_BLOBS` listed."""
        folder = self.location.folder
        ranges = export_ranges(month)
        found: list[BlobProperties] = []
        with self._calling("blob listing"):
            listing = self._container().list_blobs(name_starts_with=blob_path(folder, f"{month:%Y%m01}-"))
            for count, blob in enumerate(listing, start=1):
                if count > MAX_LISTED_BLOBS:
                    raise ManifestError(f"the {ranges[0]} export folder holds more than {MAX_LISTED_BLOBS} blobs")
                relative = blob.name[len(folder) + 1 :] if folder else blob.name
                if relative.split("/", 1)[0] in ranges:
                    found.append(blob)
        return found

    def find_manifest(self, month: date) -> Manifest | None:
        """The month's files: the newest manifest's blobs, else the newest CSV; None when there are none."""
        if self.settings.storage_only:
            return None
        month = month.replace(day=1)
        blobs = self._month_blobs(month)
        newest = _newest([b for b in blobs if b.name.rsplit("/", 1)[-1] == MANIFEST_NAME])
        if newest is not None:
            names, assembly_id = read_manifest(self._manifest_bytes(newest), newest.name)
            assembly_id = assembly_id or _signature_id(newest.name, str(newest.etag))
        else:
            newest = _newest([b for b in blobs if b.name.endswith(_REPORT_SUFFIXES)])
            if newest is None:
                return None
            names = [newest.name]
            assembly_id = uuid_in(newest.name.rsplit("/", 1)[-1]) or uuid_in(newest.name)
            assembly_id = assembly_id or _signature_id(newest.name, str(newest.etag))
        keys = [self.blob_name(n) for n in names]
        if len({k.rsplit("/", 1)[-1] for k in keys}) != len(keys):
            raise ManifestError(f"the export manifest {newest.name} lists two files with the same name")
        return Manifest(
            assembly_id=assembly_id,
            billing_period_start=month,
            report_name=self.location.name,
            manifest_key=newest.name,
            export_datetime=newest.last_modified.astimezone(UTC),
            files=tuple(ReportFile(k) for k in keys),
        )

    def _manifest_bytes(self, blob: BlobProperties) -> bytes:
        too_large = ManifestError(f"the export manifest {blob.name} is larger than {MAX_MANIFEST_BYTES} bytes")
        if (blob.size or 0) > MAX_MANIFEST_BYTES:
            raise too_large
        with self._calling("manifest download"):
            raw = self._container().download_blob(blob.name, offset=0, length=MAX_MANIFEST_BYTES + 1).readall()
        if len(raw) > MAX_MANIFEST_BYTES:
            raise too_large
        return bytes(raw)

    def etag(self, key: str) -> str:
        name = self.blob_name(key)
        with self._calling(f"properties of {name}", missing_key=key):
            return str(self._container().get_blob_client(name).get_blob_properties().etag).strip('"')

    def open_file(self, key: str) -> BinaryIO:
        name = self.blob_name(key)
        with self._calling(f"download of {name}", missing_key=key):
            downloader = self._container().download_blob(name, max_concurrency=1)
        stream = _ChunkStream(downloader.chunks(), name, self.settings.client_secret)
        return io.BufferedReader(stream, buffer_size=1 << 20)


def _newest(blobs: list[BlobProperties]) -> BlobProperties | None:
    return max(blobs, key=lambda b: (b.last_modified, b.name), default=None)


def check_blob_exports(ctx: ProviderContext, endpoints: CloudEndpoints) -> None:
    """Koku's readiness check of an Azure source: a token, the export, its container readable.

    Raises :class:`Unreachable` with the fixed message of the first failure.
    """
    try:
        reader = BlobExports.for_provider(ctx, endpoints)
        if reader.settings.storage_only:
            reader.clients.check_token()
            return
        location = reader.location
        with reader._calling("container check"):
            listing = reader._container().list_blobs(name_starts_with=location.folder or None, results_per_page=1)
            next(listing.by_page(), None)
    except IngestError as exc:
        raise Unreachable(str(exc) if isinstance(exc, AzureUnavailable) else GENERAL_MESSAGE) from None
