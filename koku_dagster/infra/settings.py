"""Settings from the environment, read once into a typed object and checked before anything runs.

Every default lives here and nowhere else (the README lists them under "Configuration"). A value
out of range or malformed raises :class:`SettingsError` naming the variable, so the code location
does not load and nothing runs with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS and SASL settings passed to every Kafka consumer and producer; the password stays out of reprs."""

    protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None

    def client_config(self) -> dict[str, str]:
        """The librdkafka properties these settings stand for (empty for plaintext)."""
        pairs = {
            "security.protocol": self.protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        return {key: value for key, value in pairs.items() if value}


@dataclass(frozen=True)
class Settings:
    """Every outside setting the project reads; built and checked by :func:`settings_from_env`."""

    home: Path
    database_url: str = field(repr=False)  # may carry a password
    object_store_url: str
    aws_endpoint_url: str | None
    kafka_bootstrap_servers: str
    kafka_security: KafkaSecurity
    sources_topic: str
    upload_topic: str
    validation_topic: str
    sources_api_url: str
    sources_api_prefix: str
    sources_internal_api_prefix: str
    sources_psk: str = field(repr=False)
    local_bucket_roots: tuple[Path, ...]
    initial_ingest_num_months: int
    polling_interval_seconds: int
    retain_num_months: int
    upload_url_allowlist: tuple[str, ...]
    azure_authority_host: str
    azure_management_url: str
    azure_blob_url: str
    gcp_bigquery_url: str | None


class _Env:
    """Reads variables, falling back to defaults, and checks each as it is read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name) or default

    def optional(self, name: str) -> str | None:
        return self._env.get(name) or None

    def positive_int(self, name: str, default: int) -> int:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < 1:
            raise SettingsError(f"{name} must be at least 1, got {value}")
        return value

    def http_url(self, name: str, default: str | None) -> str | None:
        value = self._env.get(name) or default
        if value is not None:
            _check_http_url(name, value.replace("{account}", "account"))
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        value = self.optional(name)
        if value is not None and value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value


def _check_http_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http(s) URL with a host, got {value!r}")


def _check_database_url(value: str) -> None:
    try:
        url = sa.engine.make_url(value)
    except sa.exc.ArgumentError:
        raise SettingsError("KOKU_DATABASE_URL is not a database URL") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(f"KOKU_DATABASE_URL must name SQLite or PostgreSQL, not {url.get_backend_name()!r}")


def _check_object_store_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path.startswith("/") and not parts.netloc:
        return
    if parts.scheme == "s3" and parts.netloc:
        return
    raise SettingsError(f"KOKU_OBJECT_STORE_URL must be file:///absolute/dir or s3://bucket[/prefix], got {value!r}")


def _bucket_roots(raw: str) -> tuple[Path, ...]:
    roots = tuple(Path(p).expanduser().resolve() for p in raw.split(":") if p)
    if not roots:
        raise SettingsError("KOKU_LOCAL_BUCKET_ROOTS names no directory")
    for root in roots:
        if root == Path(root.anchor):
            raise SettingsError("KOKU_LOCAL_BUCKET_ROOTS may not name the filesystem root")
    return roots


def _allowlist(raw: str) -> tuple[str, ...]:
    prefixes = tuple(raw.split())
    for prefix in prefixes:
        parts = urlsplit(prefix)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(
                f"KOKU_UPLOAD_URL_ALLOWLIST entries must be scheme://host[:port][/path] prefixes, got {prefix!r}"
            )
    return prefixes


def _kafka_security(env: _Env) -> KafkaSecurity:
    security = KafkaSecurity(
        protocol=env.choice("KOKU_KAFKA_SECURITY_PROTOCOL", KAFKA_SECURITY_PROTOCOLS),
        sasl_mechanism=env.choice("KOKU_KAFKA_SASL_MECHANISM", KAFKA_SASL_MECHANISMS),
        sasl_username=env.optional("KOKU_KAFKA_SASL_USERNAME"),
        sasl_password=env.optional("KOKU_KAFKA_SASL_PASSWORD"),
        ssl_ca_location=env.optional("KOKU_KAFKA_SSL_CA_LOCATION"),
    )
    uses_sasl = (security.protocol or "").startswith("SASL_")
    if security.sasl_mechanism and not uses_sasl:
        raise SettingsError("KOKU_KAFKA_SASL_MECHANISM needs KOKU_KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL")
    if (
        uses_sasl
        and security.sasl_mechanism in (None, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        and not (security.sasl_username and security.sasl_password)
    ):
        raise SettingsError("KOKU_KAFKA_SASL_USERNAME and KOKU_KAFKA_SASL_PASSWORD are needed for SASL")
    if security.ssl_ca_location and not Path(security.ssl_ca_location).is_file():
        raise SettingsError("KOKU_KAFKA_SSL_CA_LOCATION does not name a readable file")
    return security


def _prefix(env: _Env, name: str, default: str) -> str:
    value = env.text(name, default)
    if not value.startswith("/"):
        raise SettingsError(f"{name} must start with '/', got {value!r}")
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and check the settings from an environment mapping (``os.environ`` by default)."""
    env = _Env(os.environ if environ is None else environ)
    home = Path(env.text("KOKU_HOME", "./.koku")).expanduser().resolve()
    database_url = env.text("KOKU_DATABASE_URL", f"sqlite:///{home / 'koku.db'}")
    _check_database_url(database_url)
    object_store_url = env.text("KOKU_OBJECT_STORE_URL", f"file://{home}")
    _check_object_store_url(object_store_url)
    return Settings(
        home=home,
        database_url=database_url,
        object_store_url=object_store_url,
        aws_endpoint_url=env.http_url("AWS_ENDPOINT_URL", None),
        kafka_bootstrap_servers=env.text("KOKU_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        kafka_security=_kafka_security(env),
        sources_topic=env.text("KOKU_SOURCES_TOPIC", "platform.sources.event-stream"),
        upload_topic=env.text("KOKU_UPLOAD_TOPIC", "platform.upload.announce"),
        validation_topic=env.text("KOKU_VALIDATION_TOPIC", "platform.upload.validation"),
        sources_api_url=env.http_url("SOURCES_API_URL", "http://127.0.0.1:8000") or "",
        sources_api_prefix=_prefix(env, "SOURCES_API_PREFIX", "/api/sources/v1.0"),
        sources_internal_api_prefix=_prefix(env, "SOURCES_INTERNAL_API_PREFIX", "/internal/v1.0"),
        sources_psk=env.text("SOURCES_PSK", "sources-psk"),
        local_bucket_roots=_bucket_roots(env.text("KOKU_LOCAL_BUCKET_ROOTS", str(home / "buckets"))),
        initial_ingest_num_months=env.positive_int("KOKU_INITIAL_INGEST_NUM_MONTHS", 3),
        polling_interval_seconds=env.positive_int("KOKU_POLLING_INTERVAL_SECONDS", 86400),
        retain_num_months=env.positive_int("KOKU_RETAIN_NUM_MONTHS", 4),
        upload_url_allowlist=_allowlist(env.text("KOKU_UPLOAD_URL_ALLOWLIST", "")),
        azure_authority_host=env.http_url("KOKU_AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com") or "",
        azure_management_url=env.http_url("KOKU_AZURE_MANAGEMENT_URL", "https://management.azure.com") or "",
        azure_blob_url=env.http_url("KOKU_AZURE_BLOB_URL", "https://{account}.blob.core.windows.net") or "",
        gcp_bigquery_url=env.http_url("KOKU_GCP_BIGQUERY_URL", None),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read and checked once."""
    return settings_from_env()
