"""Parse Platform Sources Kafka messages into typed events (see docs/sources.md, step 3)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from koku_dagster.infra.kafka import MessagePosition
from koku_dagster.sources.errors import PoisonMessage
from koku_dagster.sources.model import Tenant
from koku_dagster.sources.values import BadValue, require_id

APPLICATION_EVENTS = frozenset(
    {"Application.create", "Application.update", "Application.destroy", "Application.pause", "Application.unpause"}
)
AUTHENTICATION_EVENTS = frozenset({"Authentication.create", "Authentication.update"})
SOURCE_EVENTS = frozenset({"Source.update"})
HANDLED_EVENTS = APPLICATION_EVENTS | AUTHENTICATION_EVENTS | SOURCE_EVENTS

_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class SourceEvent:
    """A handled event: what happened to which source, for which tenant."""

    event_type: str
    source_id: int
    tenant: Tenant
    position: MessagePosition
    application_type_id: int | None = None
    authtype: str | None = None


def _header(headers: Sequence[tuple[str, bytes | str | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            if value is None:
                return None
            if isinstance(value, bytes):
                if len(value) > _MAX_HEADER_BYTES:
                    raise PoisonMessage(f"header {name} is larger than {_MAX_HEADER_BYTES} bytes")
                try:
                    return value.decode("ascii")
                except UnicodeDecodeError as exc:
                    raise PoisonMessage(f"header {name} is not ASCII") from exc
            return value
    return None


def event_type_of(headers: Sequence[tuple[str, bytes | str | None]] | None) -> str | None:
    """The ``event_type`` header, or None (also when the header itself is unreadable)."""
    try:
        return _header(headers, "event_type")
    except PoisonMessage:
        return None


def decode_identity(auth_header: str) -> dict[str, Any]:
    """Decode a base64 ``x-rh-identity``; raises :class:`PoisonMessage` on garbage."""
    try:
        raw = base64.b64decode(auth_header, validate=True)
        identity = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise PoisonMessage("x-rh-identity is not base64-encoded JSON") from exc
    if not isinstance(identity, dict) or not isinstance(identity.get("identity"), dict):
        raise PoisonMessage("x-rh-identity has no identity object")
    return identity["identity"]


def _as_id(value: Any, field: str) -> int:
    """Ids arrive as JSON numbers or strings; accept both, refuse anything else."""
    try:
        return require_id(value, field)
    except BadValue as exc:
        raise PoisonMessage(f"field {exc}") from None


def _tenant(headers: Sequence[tuple[str, bytes | str | None]] | None) -> Tenant:
    auth_header = _header(headers, "x-rh-identity")
    if not auth_header:
        raise PoisonMessage("missing x-rh-identity header")
    identity = decode_identity(auth_header)
    account = _header(headers, "x-rh-sources-account-number") or identity.get("account_number") or None
    org_id = _header(headers, "x-rh-sources-org-id") or identity.get("org_id") or None
    if not org_id:
        raise PoisonMessage("missing org id (no x-rh-sources-org-id header and no identity.org_id)")
    if not isinstance(org_id, str) or len(org_id) > 36 or not org_id.isprintable():
        raise PoisonMessage("org id is not a printable string of at most 36 characters")
    if account is not None and (not isinstance(account, str) or len(account) > 150 or not account.isprintable()):
        raise PoisonMessage("account number is not a printable string of at most 150 characters")
    return Tenant(auth_header=auth_header, org_id=org_id, account_id=account)


def parse_message(
    position: MessagePosition,
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    value: bytes | None,
) -> SourceEvent | None:
    """A :class:`SourceEvent`, None for event types we ignore, or :class:`PoisonMessage`."""
    event_type = _header(headers, "event_type")
    if event_type not in HANDLED_EVENTS:
        return None
    tenant = _tenant(headers)
    try:
        body = json.loads(value or b"")
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise PoisonMessage("message body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise PoisonMessage("message body is not a JSON object")
    if event_type in SOURCE_EVENTS:
        return SourceEvent(event_type, _as_id(body.get("id"), "id"), tenant, position)
    source_id = _as_id(body.get("source_id"), "source_id")
    if event_type in APPLICATION_EVENTS:
        app_type = body.get("application_type_id")
        return SourceEvent(
            event_type,
            source_id,
            tenant,
            position,
            application_type_id=_as_id(app_type, "application_type_id") if app_type is not None else None,
        )
    authtype = body.get("authtype")
    if authtype is not None and not isinstance(authtype, str):
        raise PoisonMessage("field authtype is not a string")
    return SourceEvent(event_type, source_id, tenant, position, authtype=authtype)
