"""Settings from the environment (CONTRACT section 1), read once into a typed object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Every outside setting the project reads; built by :func:`load_settings`."""

    home: Path
    database_url: str
    object_store_url: str
    aws_endpoint_url: str | None
    kafka_bootstrap_servers: str
    sources_topic: str
    upload_topic: str
    validation_topic: str
    sources_api_url: str
    sources_api_prefix: str
    sources_internal_api_prefix: str
    sources_psk: str
    local_bucket_roots: tuple[Path, ...]
    initial_ingest_num_months: int
    polling_interval_seconds: int
    retain_num_months: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def sources_api_base(self) -> str:
        return self.sources_api_url.rstrip("/") + self.sources_api_prefix

    @property
    def sources_internal_api_base(self) -> str:
        return self.sources_api_url.rstrip("/") + self.sources_internal_api_prefix


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (defaults from CONTRACT section 1)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("KOKU_HOME") or "./.koku").expanduser().resolve()
    roots_raw = env.get("KOKU_LOCAL_BUCKET_ROOTS") or str(home / "buckets")
    roots = tuple(Path(p).expanduser().resolve() for p in roots_raw.split(":") if p)
    return Settings(
        home=home,
        database_url=env.get("KOKU_DATABASE_URL") or f"sqlite:///{home / 'koku.db'}",
        object_store_url=env.get("KOKU_OBJECT_STORE_URL") or f"file://{home}",
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        kafka_bootstrap_servers=env.get("KOKU_KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092",
        sources_topic=env.get("KOKU_SOURCES_TOPIC") or "platform.sources.event-stream",
        upload_topic=env.get("KOKU_UPLOAD_TOPIC") or "platform.upload.announce",
        validation_topic=env.get("KOKU_VALIDATION_TOPIC") or "platform.upload.validation",
        sources_api_url=env.get("SOURCES_API_URL") or "http://127.0.0.1:8000",
        sources_api_prefix=env.get("SOURCES_API_PREFIX") or "/api/sources/v1.0",
        sources_internal_api_prefix=env.get("SOURCES_INTERNAL_API_PREFIX") or "/internal/v1.0",
        sources_psk=env.get("SOURCES_PSK") or "sources-psk",
        local_bucket_roots=roots,
        initial_ingest_num_months=_int(env, "KOKU_INITIAL_INGEST_NUM_MONTHS", 3),
        polling_interval_seconds=_int(env, "KOKU_POLLING_INTERVAL_SECONDS", 86400),
        retain_num_months=_int(env, "KOKU_RETAIN_NUM_MONTHS", 4),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return settings_from_env()
