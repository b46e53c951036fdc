"""Parse OpenShift payload announcements from Kafka messages.

A message counts only when its ``service`` header is ``hccm``; others are ignored. A counted
message whose body is not a JSON object with string ``request_id``, ``org_id`` and ``url`` is
poison, and so is one whose ``b64_identity`` is missing, unreadable or names another org than
``org_id`` (a producer could otherwise file a payload under any org). The ``b64_identity`` field
is a secret: it is never kept, logged or quoted in an error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from koku_dagster.infra.kafka import MessagePosition

SERVICE = "hccm"
MAX_REQUEST_ID = 255
MAX_ORG_ID = 36
MAX_ACCOUNT = 150
MAX_URL = 8192
MAX_BODY_BYTES = 1 << 20
MAX_IDENTITY = 64 << 10


class BadAnnouncement(ValueError):
    """An ``hccm`` message that can never be processed; the reason names fields, never values."""


@dataclass(frozen=True)
class Announcement:
    """What ingestion keeps of an announcement (never the identity)."""

    request_id: str
    org_id: str
    account: str | None
    url: str
    position: MessagePosition

    def __repr__(self) -> str:  # the URL may carry a signed query string
        return (
            f"Announcement(request_id={self.request_id!r}, org_id={self.org_id!r}, url={shown_url(self.url)!r}, "
            f"position={self.position!r})"
        )


def shown_url(url: str) -> str:
    """The URL as it may be shown: scheme, host and path; no user info, query string or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def service_of(headers: Sequence[tuple[str, bytes | str | None]] | None) -> str | None:
    """The ``service`` header as text (None when absent or not decodable)."""
    for key, value in headers or ():
        if key == "service":
            if isinstance(value, bytes):
                return value.decode("utf-8", errors="replace")[:100]
            return value
    return None


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise BadAnnouncement(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise BadAnnouncement(f"{name} is not a string")
    value = value.strip()
    if required and not value:
        raise BadAnnouncement(f"{name} is empty")
    if len(value) > limit:
        raise BadAnnouncement(f"{name} is longer than {limit} characters")
    if not value.isprintable():  # NUL, control characters, lone surrogates: no database stores them
        raise BadAnnouncement(f"{name} holds control or unencodable characters")
    return value


def identity_org(encoded: object) -> str:
    """The org id named by a ``b64_identity`` (``identity.org_id``, else ``identity.internal.org_id``)."""
    if not isinstance(encoded, str) or not encoded:
        raise BadAnnouncement("b64_identity is missing")
    if len(encoded) > MAX_IDENTITY:
        raise BadAnnouncement(f"b64_identity is longer than {MAX_IDENTITY} characters")
    try:
        doc = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise BadAnnouncement("b64_identity is not base64 JSON") from None
    identity = doc.get("identity") if isinstance(doc, dict) else None
    if not isinstance(identity, dict):
        raise BadAnnouncement("b64_identity holds no identity")
    internal = identity.get("internal")
    org = identity.get("org_id") or (internal.get("org_id") if isinstance(internal, dict) else None)
    if not isinstance(org, str | int) or isinstance(org, bool) or not str(org).strip():
        raise BadAnnouncement("b64_identity names no org")
    return str(org).strip()


def parse_announcement(
    position: MessagePosition, headers: Sequence[tuple[str, bytes | str | None]] | None, value: bytes | None
) -> Announcement | None:
    """The announcement in a message, None when it is for another service; :class:`BadAnnouncement` if malformed."""
    if service_of(headers) != SERVICE:
        return None
    if not value:
        raise BadAnnouncement("empty message body")
    if len(value) > MAX_BODY_BYTES:
        raise BadAnnouncement(f"message body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise BadAnnouncement("message body is not JSON") from None
    if not isinstance(body, dict):
        raise BadAnnouncement("message body is not a JSON object")
    request_id = _text(body, "request_id", MAX_REQUEST_ID, required=True)
    org_id = _text(body, "org_id", MAX_ORG_ID, required=True)
    url = _text(body, "url", MAX_URL, required=True)
    account = _text(body, "account", MAX_ACCOUNT, required=False)
    assert request_id and org_id and url
    if identity_org(body.get("b64_identity")) != org_id:
        raise BadAnnouncement("b64_identity names another org than org_id")
    return Announcement(request_id, org_id, account, url, position)
