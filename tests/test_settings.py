"""Settings are checked when read: a bad value names its variable and nothing runs with it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from koku_dagster.infra.kafka import consumer_config, producer_config
from koku_dagster.infra.settings import SettingsError, settings_from_env

BAD_SETTINGS = [
    ({"KOKU_RETAIN_NUM_MONTHS": "0"}, "KOKU_RETAIN_NUM_MONTHS must be at least 1"),
    ({"KOKU_RETAIN_NUM_MONTHS": "-4"}, "KOKU_RETAIN_NUM_MONTHS must be at least 1"),
    ({"KOKU_POLLING_INTERVAL_SECONDS": "hourly"}, "KOKU_POLLING_INTERVAL_SECONDS must be a whole number"),
    ({"KOKU_INITIAL_INGEST_NUM_MONTHS": "0"}, "KOKU_INITIAL_INGEST_NUM_MONTHS must be at least 1"),
    ({"KOKU_OBJECT_STORE_URL": "relative/dir"}, "KOKU_OBJECT_STORE_URL must be file:///absolute/dir"),
    ({"KOKU_OBJECT_STORE_URL": "s3:///no-bucket"}, "KOKU_OBJECT_STORE_URL must be file:///absolute/dir"),
    ({"KOKU_DATABASE_URL": "mysql://u:secret@db/koku"}, "KOKU_DATABASE_URL must name SQLite or PostgreSQL"),
    ({"KOKU_DATABASE_URL": "not a url"}, "KOKU_DATABASE_URL is not a database URL"),
    ({"KOKU_LOCAL_BUCKET_ROOTS": "/"}, "KOKU_LOCAL_BUCKET_ROOTS may not name the filesystem root"),
    ({"SOURCES_API_URL": "127.0.0.1:8000"}, "SOURCES_API_URL must be an http(s) URL"),
    ({"SOURCES_API_PREFIX": "api/sources"}, "SOURCES_API_PREFIX must start with '/'"),
    ({"AWS_ENDPOINT_URL": "ftp://s3"}, "AWS_ENDPOINT_URL must be an http(s) URL"),
    ({"KOKU_UPLOAD_URL_ALLOWLIST": "https://ok.example/ file:///etc"}, "KOKU_UPLOAD_URL_ALLOWLIST entries"),
    ({"KOKU_KAFKA_SECURITY_PROTOCOL": "TLS"}, "KOKU_KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"KOKU_KAFKA_SASL_MECHANISM": "PLAIN"}, "KOKU_KAFKA_SASL_MECHANISM needs KOKU_KAFKA_SECURITY_PROTOCOL"),
    (
        {"KOKU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KOKU_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
        "KOKU_KAFKA_SASL_USERNAME and KOKU_KAFKA_SASL_PASSWORD are needed",
    ),
    ({"KOKU_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "KOKU_KAFKA_SSL_CA_LOCATION does not name"),
]


@pytest.mark.parametrize(("env", "message"), BAD_SETTINGS)
def test_bad_setting_is_refused_with_its_name(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as refused:
        settings_from_env({"KOKU_HOME": str(tmp_path), **env})
    assert "secret" not in str(refused.value)


def test_defaults_follow_koku_home(tmp_path: Path) -> None:
    settings = settings_from_env({"KOKU_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'koku.db'}"
    assert settings.object_store_url == f"file://{tmp_path}"
    assert settings.local_bucket_roots == (tmp_path / "buckets",)
    assert (settings.retain_num_months, settings.initial_ingest_num_months) == (4, 3)
    assert settings.upload_url_allowlist == ()
    assert settings.kafka_security.client_config() == {}


def test_kafka_security_reaches_clients_and_the_password_stays_out_of_reprs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = settings_from_env(
        {
            "KOKU_HOME": str(tmp_path),
            "KOKU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KOKU_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KOKU_KAFKA_SASL_USERNAME": "koku",
            "KOKU_KAFKA_SASL_PASSWORD": "hunter2-kafka",
            "KOKU_KAFKA_SSL_CA_LOCATION": str(ca),
            "SOURCES_PSK": "psk-value",
        }
    )
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "koku",
        "sasl.password": "hunter2-kafka",
        "ssl.ca.location": str(ca),
    }
    assert expected.items() <= consumer_config("b:9092", "hccm-sources", settings.kafka_security).items()
    assert expected.items() <= producer_config("b:9092", settings.kafka_security, acks="all").items()
    assert "hunter2-kafka" not in repr(settings) and "psk-value" not in repr(settings)


def test_a_bad_setting_stops_the_code_location_from_loading(tmp_path: Path) -> None:
    env = {**os.environ, "KOKU_HOME": str(tmp_path), "KOKU_RETAIN_NUM_MONTHS": "0", "DAGSTER_HOME": str(tmp_path)}
    validate = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(validate), "definitions", "validate", "-m", "koku_dagster.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode != 0
    assert "KOKU_RETAIN_NUM_MONTHS must be at least 1" in done.stdout + done.stderr
    assert not (tmp_path / "koku.db").exists()  # nothing ran: no database was created
