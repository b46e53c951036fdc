"""Value types of the sources domain."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Tenant:
    """Who an event or request is for. ``auth_header`` is the raw, secret identity header."""

    auth_header: str
    org_id: str
    account_id: str | None = None

    def __repr__(self) -> str:  # never print the identity header
        return f"Tenant(org_id={self.org_id!r}, account_id={self.account_id!r})"


@dataclass
class SourceRecord:
    """One ``api_sources`` row, as the processor sees and changes it."""

    source_id: int
    offset: int
    auth_header: str | None = None
    account_id: str | None = None
    org_id: str | None = None
    source_uuid: str | None = None
    name: str | None = None
    source_type: str = ""
    authentication: dict[str, Any] = field(default_factory=dict)
    billing_source: dict[str, Any] = field(default_factory=dict)
    koku_uuid: str | None = None
    paused: bool = False
    pending_update: bool = False
    pending_delete: bool = False
    out_of_order_delete: bool = False
    status: dict[str, Any] | None = None
    status_push_pending: bool = False
    #: Platform Sources id of the cost-management application (where statuses are PATCHed).
    application_id: int | None = None
    op_attempts: int = 0
    op_next_attempt_at: datetime | None = None
    op_last_error: str | None = None
    op_failed: bool = False

    def copy(self) -> SourceRecord:
        return dataclasses.replace(
            self,
            authentication=dict(self.authentication),
            billing_source=dict(self.billing_source),
            status=dict(self.status) if self.status is not None else None,
        )

    @property
    def tenant(self) -> Tenant | None:
        if not self.auth_header or not self.org_id:
            return None
        return Tenant(self.auth_header, self.org_id, self.account_id)

    @property
    def credentials(self) -> dict[str, Any]:
        return dict(self.authentication.get("credentials") or {})

    @property
    def data_source(self) -> dict[str, Any]:
        return dict((self.billing_source or {}).get("data_source") or {})

    def __repr__(self) -> str:  # keep secrets out of reprs and tracebacks
        return (
            f"SourceRecord(source_id={self.source_id}, type={self.source_type!r}, "
            f"koku_uuid={self.koku_uuid!r}, pending_update={self.pending_update}, "
            f"pending_delete={self.pending_delete}, tombstone={self.out_of_order_delete})"
        )


@dataclass(frozen=True)
class SourceDetails:
    """What ``GET sources/{id}`` tells (plus the resolved type name)."""

    name: str | None
    source_type_id: int | None
    uid: str | None
    source_ref: str | None


@dataclass(frozen=True)
class Application:
    """The cost-management application of a source."""

    id: int
    extra: dict[str, Any]


@dataclass(frozen=True)
class AuthenticationRecord:
    id: int
    username: str
    extra: dict[str, Any]
