"""Announce OpenShift payloads the way ingress does: a tarball per nise ``--insights-upload`` folder,
and a message on the upload topic with header ``service: hccm`` pointing at it (a ``file://`` URL,
so the tarball must lie under one of ``KOKU_LOCAL_BUCKET_ROOTS``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from koku_devtools.payloads import build_payload, payload_folders
from koku_devtools.platform_sources.admin import identity_header


def announcement_body(
    url: str, *, request_id: str | None = None, org_id: str = "1234567", account: str = "10001", size: int = 0
) -> dict[str, Any]:
    """An ingress announcement (fields as ``platform.upload.announce`` carries them), with a fake identity."""
    return {
        "account": account,
        "org_id": org_id,
        "category": "tar",
        "request_id": request_id or uuid.uuid4().hex,
        "principal": org_id,
        "service": "hccm",
        "size": size,
        "url": url,
        "b64_identity": identity_header(org_id, account),
        "timestamp": datetime.now(UTC).isoformat(),
        "metadata": {"reporter": "", "stale_timestamp": "0001-01-01T00:00:00Z"},
    }


def produce_announcements(
    bootstrap: str, topic: str, bodies: Iterable[dict[str, Any] | bytes], *, service: str | None = "hccm"
) -> None:
    """Put messages on the upload topic (raw bytes are sent as they are, for malformed messages)."""
    headers: list[tuple[str, str | bytes | None]] = [("service", service.encode())] if service is not None else []
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 2})
    for body in bodies:
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        producer.produce(topic, value=value, headers=headers)
    if producer.flush(10):
        raise RuntimeError(f"announcements not delivered to {topic}")


def announce_payloads(
    upload_root: Path,
    tarball_dir: Path,
    *,
    bootstrap: str,
    topic: str,
    org_id: str = "1234567",
    account: str = "10001",
) -> list[dict[str, Any]]:
    """Build a tarball per report folder under ``upload_root`` into ``tarball_dir`` and announce each.

    Returns the announcement bodies sent (each holds its ``request_id``).
    """
    bodies = []
    for folder in payload_folders(upload_root):
        request_id = uuid.uuid4().hex
        tarball = build_payload(folder, tarball_dir.resolve() / f"{request_id}.tar.gz")
        bodies.append(
            announcement_body(
                tarball.as_uri(), request_id=request_id, org_id=org_id, account=account, size=tarball.stat().st_size
            )
        )
    produce_announcements(bootstrap, topic, bodies)
    return bodies
