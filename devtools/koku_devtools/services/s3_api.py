"""Client helpers shared by the S3-compatible servers (SeaweedFS and moto)."""

from __future__ import annotations

from typing import Any

from koku_devtools.services.processes import LOOPBACK, tcp_open


class S3ApiMixin:
    """Endpoint, boto3 clients and AWS environment of a server speaking the S3 API on loopback."""

    access_key: str
    secret_key: str
    region: str
    port: int

    @property
    def endpoint_url(self) -> str:
        """HTTP endpoint for boto3 / pyarrow (``http://127.0.0.1:PORT``)."""
        return f"http://{LOOPBACK}:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client(service, **kwargs)``."""
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=2,
                read_timeout=30,
            ),
        }

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for ``service`` bound to this server."""
        import boto3

        return boto3.client(service, **self.client_kwargs())

    def aws_env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs (and nise) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def _s3_ready(self) -> bool:
        if not tcp_open(self.port):
            return False
        self.client("s3").list_buckets()
        return True
