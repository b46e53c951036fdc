"""moto in server mode (all AWS services on one port; used for S3 and STS role-assumption tests)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from koku_devtools.services.processes import LOOPBACK, ProcessService, free_port
from koku_devtools.services.s3_api import S3ApiMixin


class MotoServer(S3ApiMixin, ProcessService):
    """moto in server mode (all services on one port; used for S3 and STS tests)."""

    name = "moto"

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        access_key: str = "testing",
        secret_key: str = "testing",
        region: str = "us-east-1",
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def _before_start(self) -> None:
        self.port = self._requested_port or free_port()

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]

    def _ready(self) -> bool:
        return self._s3_ready()

    def reset(self) -> None:
        """Drop all state held by the server (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
