"""Pure logic: event parsing, readiness screens, statuses; and the client's error classification."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from koku_dagster.infra.kafka import MessagePosition
from koku_dagster.providers.availability import MISSING_FIELDS_MESSAGE, build_status
from koku_dagster.providers.base import SettingsError, resolve_local_directory
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import PoisonMessage, SourceNotFound, SourcesApiError
from koku_dagster.sources.events import parse_message
from koku_dagster.sources.model import SourceRecord, Tenant
from koku_dagster.sources.provider_operations import needed_operation
from koku_devtools.platform_sources import StandInServer
from koku_devtools.platform_sources.admin import StandInAdmin, identity_header

POS = MessagePosition("t", 0, 5)


def _identity(**identity: object) -> bytes:
    return base64.b64encode(json.dumps({"identity": identity}).encode())


def _headers(event_type: str = "Application.create", **extra: bytes) -> list[tuple[str, bytes]]:
    base = {"event_type": event_type.encode(), "x-rh-identity": _identity(account_number="10001", org_id="1234567")}
    base.update(extra)
    return list(base.items())


def test_header_precedence_and_fallbacks() -> None:
    body = json.dumps({"id": 1, "source_id": "42", "application_type_id": 2}).encode()
    event = parse_message(POS, _headers(), body)
    assert event is not None and event.source_id == 42 and event.application_type_id == 2
    assert event.tenant.account_id == "10001" and event.tenant.org_id == "1234567"
    event = parse_message(POS, _headers(**{"x-rh-sources-account-number": b"999", "x-rh-sources-org-id": b"555"}), body)
    assert event.tenant.account_id == "999" and event.tenant.org_id == "555"
    no_org = [("event_type", b"Application.create"), ("x-rh-identity", _identity(account_number="1"))]
    with pytest.raises(PoisonMessage, match="org id"):
        parse_message(POS, no_org, body)
    with pytest.raises(PoisonMessage, match="x-rh-identity"):
        parse_message(POS, [("event_type", b"Application.create")], body)
    for org in ("12\u0000", "\ud800"):  # no database stores these; the message must not block the topic
        unstorable = [("event_type", b"Application.create"), ("x-rh-identity", _identity(org_id=org))]
        with pytest.raises(PoisonMessage, match="org id is not a printable string"):
            parse_message(POS, unstorable, body)


def test_ignored_and_unknown_types_and_unknown_fields() -> None:
    for event_type in ("Source.create", "Source.destroy", "Authentication.destroy", "Endpoint.create", "Nope"):
        assert parse_message(POS, _headers(event_type), b"{garbage") is None
    assert parse_message(POS, None, b"{}") is None
    body = json.dumps({"source_id": 3, "authtype": "arn", "tenant": "x", "brand_new_field": [1, 2]}).encode()
    event = parse_message(POS, _headers("Authentication.create"), body)
    assert event is not None and event.authtype == "arn"  # unknown fields are tolerated
    assert parse_message(POS, _headers("Source.update"), b'{"id": 10}').source_id == 10


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"application_type_id": 2}', "source_id"),
        (b'{"source_id": true}', "source_id"),
        (b'{"source_id": 99999999999999999999999}', "not a valid id"),
        (b'{"source_id": -3}', "not a valid id"),
        (b'{"source_id": 1, "application_type_id": "x"}', "application_type_id"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_poison_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        parse_message(POS, _headers(), body)


def test_tenant_repr_hides_identity() -> None:
    tenant = Tenant(auth_header="c2VjcmV0", org_id="1")
    assert "c2VjcmV0" not in repr(tenant)
    record = SourceRecord(
        source_id=1, offset=0, auth_header="c2VjcmV0", authentication={"credentials": {"client_secret": "s"}}
    )
    assert "c2VjcmV0" not in repr(record) and "client_secret" not in repr(record)


def _ready(source_type: str, credentials: dict, data_source: dict, **flags: object) -> SourceRecord:
    record = SourceRecord(
        source_id=1,
        offset=0,
        name="n",
        auth_header="h",
        org_id="1",
        source_type=source_type,
        authentication={"credentials": credentials} if credentials else {},
        billing_source={"data_source": data_source} if data_source else {},
    )
    for key, value in flags.items():
        setattr(record, key, value)
    return record


AZURE = {"client_id": "c", "client_secret": "s", "subscription_id": "x", "tenant_id": "t"}


@pytest.mark.parametrize(
    "record,expected",
    [
        (_ready("AWS", {"role_arn": "a"}, {"bucket": "b"}), "create"),
        (_ready("AWS", {"role_arn": "a"}, {}), None),
        (_ready("OCP", {"cluster_id": "c"}, {}), "create"),
        (_ready("OCP", {"cluster_id": "c"}, {}, pending_delete=True, koku_uuid="u"), "destroy"),
        (_ready("OCP", {"cluster_id": "c"}, {}, name=None), None),
        (_ready("Azure", AZURE, {"resource_group": "r", "storage_account": "s"}), "create"),
        (_ready("Azure", {**AZURE, "extra": 1}, {"resource_group": "r", "storage_account": "s"}), None),
        (_ready("GCP", {"project_id": "p"}, {"dataset": "d", "table_id": "t"}), "create"),
        (_ready("GCP", {"project_id": "p"}, {}), None),
        (_ready("", {"role_arn": "a"}, {"bucket": "b"}), None),
        (_ready("AWS", {"role_arn": "a"}, {"bucket": "b"}, status={"availability_status": "unavailable"}), None),
        (_ready("AWS", {"role_arn": "a"}, {"bucket": "b"}, koku_uuid="u", pending_update=True), "update"),
        (
            _ready("AWS", {"role_arn": "a"}, {"bucket": "b"}, koku_uuid="u", pending_update=True, pending_delete=True),
            "destroy",
        ),
        (_ready("AWS", {"role_arn": "a"}, {"bucket": "b"}, out_of_order_delete=True), None),
    ],
)
def test_readiness_screens(record: SourceRecord, expected: str | None) -> None:
    assert needed_operation(record) == expected


def test_status_wording() -> None:
    assert build_status(None) == {"availability_status": "available", "availability_status_error": ""}
    assert build_status("my-error") == {"availability_status": "unavailable", "availability_status_error": "my-error"}
    missing = build_status("One or more required fields is invalid/missing. Required fields are ['bucket']")
    assert missing["availability_status_error"] == MISSING_FIELDS_MESSAGE


def test_local_directory_rules(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    roots = (root.resolve(),)
    assert resolve_local_directory(str(root / "ok"), roots) == (root / "ok").resolve()
    for bad in [str(root / ".." / "outside"), "relative/dir", str(root / "link"), str(root / "missing"), "", str(root)]:
        with pytest.raises(SettingsError):
            resolve_local_directory(bad, roots)


def test_client_error_classification_against_the_stand_in() -> None:
    with StandInServer() as server:
        client = SourcesClient(server.url + "/api/sources/v1.0", server.url + "/internal/v1.0", "sources-psk")
        tenant = Tenant(identity_header("1234567", "10001"), "1234567", "10001")
        assert client.cost_management_type_id() == 2
        with pytest.raises(SourceNotFound):
            client.source_details(9999, tenant)
        assert client.patch_availability(9999, {"availability_status": "available"}, tenant) is False
        server.inject_faults(status=403, count=1)
        with pytest.raises(SourcesApiError, match="status 403"):
            client.source_details(1, tenant)
        server.inject_faults(status=404, count=1, detail="application not found")
        with pytest.raises(SourcesApiError, match="status 404"):
            client.source_details(1, tenant)
        admin = StandInAdmin(server.url)
        created = admin.create_cost_source("azure", "Az", client_secret="top-secret")
        auth_id = created["authentication"]["id"]
        assert client.authentication_password(int(auth_id), tenant) == "top-secret"
        bad = SourcesClient(server.url + "/api/sources/v1.0", server.url + "/internal/v1.0", "wrong-psk")
        with pytest.raises(SourcesApiError) as excinfo:
            bad.authentication_password(int(auth_id), tenant)
        assert "wrong-psk" not in str(excinfo.value) and "top-secret" not in str(excinfo.value)
        client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = SourcesClient(f"http://127.0.0.1:{port}/api/sources/v1.0", f"http://127.0.0.1:{port}/internal/v1.0", "k")
    with pytest.raises(SourcesApiError, match="unreachable"):
        dead.cost_management_type_id()


def test_client_requests_carry_each_tenants_headers_and_body() -> None:
    """Requests prepared from a per-tenant template: each call gets its own tenant, URL and body."""
    with StandInServer() as server:
        client = SourcesClient(server.url + "/api/sources/v1.0", server.url + "/internal/v1.0", "sources-psk")
        first = Tenant(identity_header("1111111", "10001"), "1111111", "10001")
        second = Tenant(identity_header("2222222"), "2222222")
        apps = {}
        for tenant in (first, second):
            admin = StandInAdmin(server.url, org_id=tenant.org_id, account=tenant.account_id or "")
            apps[tenant.org_id] = [int(admin.create_cost_source("ocp", f"c{i}")["application"]["id"]) for i in range(2)]
            admin.close()
        before = len(server.requests)
        sent = [
            (tenant, app, {"availability_status": "unavailable", "availability_status_error": f"error {app} é"})
            for app in (0, 1)
            for tenant in (first, second, first)
        ]
        for tenant, app, status in sent:
            assert client.patch_availability(apps[tenant.org_id][app], status, tenant) is True
        patches = [r for r in server.requests[before:] if r.method == "PATCH"]
        assert len(patches) == len(sent)
        for request, (tenant, app, status) in zip(patches, sent, strict=True):
            assert request.path == f"/api/sources/v1.0/applications/{apps[tenant.org_id][app]}"
            assert request.body == status and request.status == 200
            assert request.headers["x-rh-identity"] == tenant.auth_header
            assert request.headers["x-rh-sources-org-id"] == tenant.org_id
            assert request.headers.get("x-rh-sources-account-number") == tenant.account_id
            assert request.headers["x-rh-sources-psk"] == "sources-psk"
            assert request.headers["content-type"] == "application/json"
            assert "cookie" not in request.headers
        for tenant in (first, second):
            assert {a for a, _ in server.status_patches() if a in apps[tenant.org_id]} == set(apps[tenant.org_id])
        # Lists with query parameters go the ordinary way.
        found = client.applications_by_source([1, 2, 3, 4], 2, second)
        assert {a.id for a in found.values()} == set(apps[second.org_id])
        client.close()
