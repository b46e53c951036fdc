"""Azure Blob Storage from Azurite (npm), over HTTPS with ``--oauth basic``, installed by the harness itself.

Azurite accepts the account's shared key and, over HTTPS only, bearer tokens whose ``iss`` starts with
``https://sts.windows.net/`` and whose ``aud`` is ``https://storage.azure.com`` (it checks ``nbf``/``exp``
but not the signature): the tokens of :class:`~koku_devtools.services.azure_standin.AzureStandIn`.
Paths are path-style: ``https://127.0.0.1:{port}/{account}/{container}/{blob}``.
"""

from __future__ import annotations

import shutil
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koku_devtools.services.cache import cached_install, run_step
from koku_devtools.services.processes import LOOPBACK, ProcessService, ServiceError, free_port
from koku_devtools.services.tls import LocalTls, make_local_tls

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

AZURITE_PACKAGE = "azurite@3.37.0"
#: Azurite's built-in development account (its public, documented key).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _build(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ServiceError("Azurite needs Node.js and npm on PATH (e.g. apt-get install nodejs npm)")
    run_step(
        [npm, "install", "--prefix", str(folder), "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
         "--loglevel=error", AZURITE_PACKAGE],
        folder,
    )  # fmt: skip


def ensure_azurite() -> Path:
    """The ``azurite-blob`` launcher, installed into the cache folder on first use."""
    folder = cached_install("azurite", AZURITE_PACKAGE, _build)
    return folder / "node_modules" / ".bin" / "azurite-blob"


class Azurite(ProcessService):
    """Azurite's Blob service on ``https://127.0.0.1:{port}`` (blob only), data in ``workdir/data``.

    ``tls`` is the certificate to serve (a new one in ``workdir/tls`` when not given); clients trust
    :attr:`ca_path`. The API version check is skipped and unsupported headers are ignored (``--loose``).
    """

    name = "azurite"
    start_timeout = 60.0

    def __init__(self, port: int | None = None, workdir: Path | None = None, *, tls: LocalTls | None = None) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.tls = tls or make_local_tls(self.workdir / "tls")
        self.account_name = ACCOUNT_NAME
        self.account_key = ACCOUNT_KEY
        self._launcher: Path | None = None

    @property
    def ca_path(self) -> Path:
        """The CA certificate (PEM) that clients must trust."""
        return self.tls.ca_path

    @property
    def blob_url(self) -> str:
        """Account URL for ``BlobServiceClient(account_url=...)``, e.g. ``https://127.0.0.1:10000/devstoreaccount1``."""
        return f"https://{LOOPBACK}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        """Shared-key connection string of the development account."""
        return (
            f"DefaultEndpointsProtocol=https;AccountName={self.account_name};AccountKey={self.account_key};"
            f"BlobEndpoint={self.blob_url};"
        )

    def service_client(self, credential: Any = None) -> BlobServiceClient:
        """A ``BlobServiceClient`` trusting :attr:`ca_path`; shared-key auth unless ``credential`` is given."""
        from azure.storage.blob import BlobServiceClient

        credential = credential or {"account_name": self.account_name, "account_key": self.account_key}
        return BlobServiceClient(self.blob_url, credential=credential, connection_verify=str(self.ca_path))

    def _before_start(self) -> None:
        self._launcher = ensure_azurite()
        self.port = self._requested_port or free_port()
        (self.workdir / "data").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        assert self._launcher is not None
        return [
            str(self._launcher),
            "--blobHost", LOOPBACK,
            "--blobPort", str(self.port),
            "--location", str(self.workdir / "data"),
            "--cert", str(self.tls.cert_path),
            "--key", str(self.tls.key_path),
            "--oauth", "basic",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]  # fmt: skip

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        try:
            with urllib.request.urlopen(f"{self.blob_url}?comp=list", timeout=2, context=context):
                return True
        except urllib.error.HTTPError:  # any answer over TLS (here: 403, no credentials) means it is serving
            return True
