"""Tenants and who a request comes from: identity header, org id and account headers, PSK checks."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from koku_devtools.platform_sources.errors import ApiError

if TYPE_CHECKING:
    from koku_devtools.platform_sources.store import Store


@dataclass
class Tenant:
    """A tenant, found by org id or EBS account (``external_tenant``)."""

    id: int
    org_id: str
    external_tenant: str


def tenant_for(store: Store, org_id: str, account: str) -> Tenant:
    """Find the tenant by org id, then by account; create it when missing."""
    with store.lock:
        found = None
        if org_id:
            found = next((t for t in store.tenants.values() if t.org_id == org_id), None)
        if found is None and account:
            found = next((t for t in store.tenants.values() if t.external_tenant == account), None)
        if found is None:
            found = Tenant(store.new_id("tenant"), org_id, account)
            store.tenants[found.id] = found
        if not found.org_id and org_id:
            found.org_id = org_id
        if not found.external_tenant and account:
            found.external_tenant = account
        return found


@dataclass
class RequestIdentity:
    """Identity and tenancy of one request."""

    raw_identity: str | None
    identity: dict[str, Any]
    org_id: str
    account: str
    forward_org_id: str
    forward_account: str
    psk: str | None

    @property
    def forward_identity(self) -> str:
        """The raw header, or the one the service generates from org/account."""
        if self.raw_identity:
            return self.raw_identity
        return system_identity_header(self.forward_org_id or self.org_id, self.forward_account or self.account)

    @property
    def cert_auth(self) -> bool:
        """Whether the identity is a certificate-authenticated system."""
        system = self.identity.get("identity", {}).get("system")
        return isinstance(system, dict) and bool(system)

    def require_tenancy(self) -> None:
        """401 unless the request names an org id or an account."""
        if not self.org_id and not self.account:
            raise ApiError(401, "the ebs account number and the org id are missing")


def system_identity_header(org_id: str, account: str) -> str:
    """Base64 of the identity the service generates for header-only callers."""
    ident: dict[str, Any] = {}
    if account:
        ident["account_number"] = account
    ident.update({"org_id": org_id, "internal": {"org_id": ""}, "type": "System"})
    text = json.dumps({"identity": ident, "entitlements": None}, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


def request_identity(headers: dict[str, str]) -> RequestIdentity:
    """Read the identity of a request from its (lower-case) headers; 500 on an undecodable identity."""
    raw = headers.get("x-rh-identity") or None
    identity: dict[str, Any] = {}
    if raw:
        try:
            identity = json.loads(base64.b64decode(raw, validate=False))
            if not isinstance(identity, dict) or not isinstance(identity.get("identity", {}), dict):
                raise ValueError("identity is not an object")
        except (ValueError, binascii.Error):
            raise ApiError(500, "Internal Server Error") from None
    ident = identity.get("identity") or {}
    header_org = headers.get("x-rh-sources-org-id", "")
    header_account = headers.get("x-rh-sources-account-number", "")
    ident_org = str(ident.get("org_id") or "")
    ident_account = str(ident.get("account_number") or "")
    return RequestIdentity(
        raw_identity=raw,
        identity=identity,
        org_id=ident_org or header_org,
        account=ident_account or header_account,
        forward_org_id=header_org or ident_org,
        forward_account=header_account or ident_account,
        psk=headers.get("x-rh-sources-psk"),
    )


def check_psk(caller: RequestIdentity, psks: frozenset[str]) -> None:
    """401 when the request sends a pre-shared key that is not accepted."""
    if caller.psk is not None and caller.psk not in psks:
        raise ApiError(401, "Unauthorized Action: Incorrect PSK")


def authorize_write(caller: RequestIdentity, psks: frozenset[str], method: str, rest: str) -> None:
    """Writes need an accepted PSK or an identity (RBAC is bypassed); cert-auth systems may only
    read, create and delete whole sources."""
    if caller.psk is not None:
        check_psk(caller, psks)
        return
    if caller.raw_identity:
        if caller.cert_auth and (
            method not in ("GET", "POST", "DELETE") or (method == "DELETE" and not re.fullmatch(r"sources/[^/]+", rest))
        ):
            raise ApiError(405, "Method Not Allowed")
        return
    raise ApiError(401, "Unauthorized Action: Missing RBAC permissions")
