"""Tests of the stand-in Platform Sources server (no Kafka: events are recorded in memory)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from koku_devtools.platform_sources import AdminError, StandInAdmin, StandInServer, identity_header

ORG = "1234567"
ACCOUNT = "10001"
API = "/api/sources/v1.0"
READ = {"x-rh-sources-org-id": ORG, "x-rh-sources-psk": "sources-psk"}
EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
REST_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture()
def server() -> Iterator[StandInServer]:
    srv = StandInServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def admin(server: StandInServer) -> Iterator[StandInAdmin]:
    client = StandInAdmin(server.url, org_id=ORG, account=ACCOUNT)
    yield client
    client.close()


def get(server: StandInServer, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(
        f"{server.url}{path}", params=params or None, headers=READ if headers is None else headers, timeout=5
    )


def decode_identity(value: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(value))


def test_health_and_seeded_types(server: StandInServer) -> None:
    assert requests.get(f"{server.url}/health", timeout=5).text == "OK"
    body = get(
        server, f"{API}/application_types", headers={}, **{"filter[name]": "/insights/platform/cost-management"}
    ).json()
    assert [t["id"] for t in body["data"]] == ["2"]
    cost = body["data"][0]
    assert {"amazon", "azure", "google", "openshift", "amazon-local", "azure-local", "google-local"} <= set(
        cost["supported_source_types"]
    )
    assert cost["supported_authentication_types"]["azure-local"] == ["tenant_id_client_id_client_secret"]
    names = {t["id"]: t["name"] for t in get(server, "/api/sources/v3.1/source_types", headers={}).json()["data"]}
    assert [names[str(i)] for i in range(1, 10)] == [
        "openshift",
        "amazon",
        "azure",
        "google",
        "ibm",
        "satellite",
        "amazon-local",
        "azure-local",
        "google-local",
    ]
    only = get(server, "/api/sources/v3/source_types", headers={}, **{"filter[id]": "7"}).json()
    assert [t["name"] for t in only["data"]] == ["amazon-local"]
    assert get(server, "/api/sources/v2.0/source_types/4", headers={}).json()["name"] == "google"


def test_envelope_pagination_and_links(server: StandInServer, admin: StandInAdmin) -> None:
    for n in range(3):
        admin.create_source(f"src-{n}", "amazon")
    resp = get(server, f"{API}/sources", limit="2", offset="1", **{"filter[source_type_id]": "2"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"data", "meta", "links"}
    assert body["meta"] == {"count": 3, "limit": 2, "offset": 1}
    assert [s["id"] for s in body["data"]] == ["2", "3"]
    assert body["links"] == {
        "first": f"{API}/sources?filter[source_type_id]=2&limit=2&offset=1",
        "last": f"{API}/sources?filter[source_type_id]=2&limit=2&offset=3",
    }
    source = body["data"][0]
    assert isinstance(source["source_type_id"], str) and REST_TIME.match(source["created_at"])
    assert get(server, f"{API}/sources", sort_by="name desc").json()["data"][0]["name"] == "src-2"
    assert get(server, f"{API}/sources", limit="0").status_code == 400
    assert get(server, f"{API}/sources", offset="-1").status_code == 400


def test_filters(server: StandInServer, admin: StandInAdmin) -> None:
    aws = admin.create_cost_source("aws", "AWS one", bucket="b1")
    ocp = admin.create_cost_source("ocp", "OCP one", cluster_id="cluster-1")
    plain = admin.create_source("not cost", "amazon")
    sid = aws["source"]["id"]

    def ids(path: str, **params: str) -> list[str]:
        resp = get(server, path, **params)
        assert resp.status_code == 200, resp.text
        return [row["id"] for row in resp.json()["data"]]

    assert ids(f"{API}/sources", **{"filter[name]": "AWS one"}) == [sid]
    assert ids(f"{API}/sources", **{"filter[name][eq]": "OCP one"}) == [ocp["source"]["id"]]
    assert ids(f"{API}/sources", name="not cost") == [plain["id"]]
    assert ids(f"{API}/sources", **{"filter[name][starts_with]": "AWS", "filter[name][eq_i]": "aws ONE"}) == [sid]
    assert ids(f"{API}/sources?filter[id][]={sid}&filter[id][]={plain['id']}") == [sid, plain["id"]]
    assert ids(f"{API}/sources", **{"filter[source_type][name]": "openshift"}) == [ocp["source"]["id"]]
    assert ids(f"{API}/sources", **{"filter[source_ref][nil]": ""}) == [sid, plain["id"]]
    # Koku's "is this a cost-management source?" question
    assert ids(f"{API}/application_types/2/sources", **{"filter[id]": sid}) == [sid]
    assert ids(f"{API}/application_types/2/sources", **{"filter[id]": plain["id"]}) == []
    apps = get(server, f"{API}/applications", **{"filter[source_id]": sid, "filter[application_type_id]": "2"})
    assert apps.json()["data"][0]["extra"] == {"bucket": "b1"}
    auths = get(server, f"{API}/authentications", **{"filter[source_id]": sid, "filter[authtype]": "arn"})
    assert auths.json()["data"][0]["username"] == "arn:aws:iam::111122223333:role/CostManagement"

    bad = {"errors": [{"detail": "bad request: invalid filter parameter", "status": "400"}]}
    for params in ({"filter[nope]": "1"}, {"cachebuster": "123"}, {"filter[name][like]": "x"}):
        resp = get(server, f"{API}/sources", **params)
        assert resp.status_code == 400
        assert resp.json() == bad


def test_not_found_and_invalid_ids(server: StandInServer) -> None:
    for path, detail in (
        ("sources/999", "source not found"),
        ("applications/999", "application not found"),
        ("authentications/999", "authentication not found"),
        ("application_types/99/sources", "application type not found"),
        ("source_types/99", "source type not found"),
    ):
        resp = get(server, f"{API}/{path}")
        assert resp.status_code == 404
        assert resp.json() == {"errors": [{"detail": detail, "status": "404"}]}
    assert get(server, f"{API}/sources/abc").status_code == 400
    assert get(server, f"{API}/sources/0").status_code == 400
    assert get(server, f"{API}/nothing-here").status_code == 404


def test_null_fields_are_omitted(server: StandInServer, admin: StandInAdmin) -> None:
    ocp = admin.create_cost_source("ocp", "cluster", cluster_id="abc-123")
    source = get(server, f"{API}/sources/{ocp['source']['id']}").json()
    assert source["source_ref"] == "abc-123"
    for key in ("version", "imported", "paused_at", "last_checked_at", "last_available_at", "tenant_id"):
        assert key not in source
    app = get(server, f"{API}/applications/{ocp['application']['id']}").json()
    assert "extra" not in app and "availability_status_error" not in app
    assert app["source_id"] == ocp["source"]["id"] and app["application_type_id"] == "2"
    admin.pause_source(ocp["source"]["id"])
    assert REST_TIME.match(get(server, f"{API}/sources/{ocp['source']['id']}").json()["paused_at"])


def test_tenancy_and_identity(server: StandInServer, admin: StandInAdmin) -> None:
    sid = admin.create_source("mine", "amazon")["id"]
    resp = get(server, f"{API}/sources", headers={})
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["detail"] == "the ebs account number and the org id are missing"
    assert get(server, f"{API}/sources", headers={"x-rh-identity": "!!not base64 json!!"}).status_code == 500
    # identity alone is enough for reads; another org sees nothing
    assert get(server, f"{API}/sources/{sid}", headers={"x-rh-identity": identity_header(ORG, ACCOUNT)}).ok
    other = {"x-rh-identity": identity_header("7654321", "20002")}
    assert get(server, f"{API}/sources", headers=other).json()["meta"]["count"] == 0
    assert get(server, f"{API}/sources/{sid}", headers=other).json()["errors"][0]["detail"] == "source not found"
    # the account alone also finds the tenant
    assert get(server, f"{API}/sources", headers={"x-rh-sources-account-number": ACCOUNT}).json()["meta"]["count"] == 1


def test_psk_and_write_authorization(server: StandInServer) -> None:
    body = {"name": "x", "source_type_id": "2"}
    wrong = StandInAdmin(server.url, org_id=ORG, account=ACCOUNT, psk="wrong")
    with pytest.raises(AdminError) as err:
        wrong.request("POST", "sources", body)
    assert err.value.status == 401 and err.value.detail == "Unauthorized Action: Incorrect PSK"
    headers_only = requests.post(
        f"{server.url}{API}/sources", json=body, timeout=5, headers={"x-rh-sources-org-id": ORG}
    )
    assert headers_only.status_code == 401
    assert headers_only.json()["errors"][0]["detail"] == "Unauthorized Action: Missing RBAC permissions"
    identity_only = StandInAdmin(server.url, org_id=ORG, account=ACCOUNT, psk=None)
    assert identity_only.request("POST", "sources", body)["name"] == "x"
    psk_only = StandInAdmin(server.url, org_id=ORG, account="", identity="")
    assert psk_only.request("POST", "sources", {"name": "y", "source_type_id": 2})["name"] == "y"
    assert not any(r.status == 201 for r in server.requests if r.headers.get("x-rh-sources-psk") == "wrong")


def test_password_only_from_internal_endpoint(server: StandInServer, admin: StandInAdmin) -> None:
    created = admin.create_cost_source("azure", "Azure", client_secret="s3cr3t-value")
    auth_id = created["authentication"]["id"]
    assert "password" not in created["authentication"]
    assert "password" not in get(server, f"{API}/authentications/{auth_id}").json()
    assert "s3cr3t-value" not in get(server, f"{API}/authentications").text
    assert "password" not in get(server, f"/internal/v1.0/authentications/{auth_id}").json()
    internal = get(server, f"/internal/v1.0/authentications/{auth_id}?expose_encrypted_attribute[]=password").json()
    assert internal["password"] == "s3cr3t-value"
    assert internal["username"] == "22222222-2222-2222-2222-222222222222"
    assert internal["extra"] == {"azure": {"tenant_id": "33333333-3333-3333-3333-333333333333"}}
    no_psk = {"x-rh-sources-org-id": ORG}
    assert get(server, f"/internal/v1.0/authentications/{auth_id}", headers=no_psk).status_code == 401
    assert all("s3cr3t-value" not in json.dumps(e.body) for e in server.events)
    assert "s3cr3t-value" not in repr(server.store.authentications)


def test_azure_event_sequence(server: StandInServer, admin: StandInAdmin) -> None:
    created = admin.create_cost_source(
        "azure",
        "Azure prod",
        resource_group="rg",
        storage_account="sa",
        subscription_id="sub-1",
        client_id="client-1",
        client_secret="secret-1",
        tenant_id="tenant-1",
    )
    sid, app_id = int(created["source"]["id"]), int(created["application"]["id"])
    auth_id = created["authentication"]["id"]
    assert [e.event_type for e in server.events] == [
        "Source.create",
        "Application.create",
        "Authentication.create",
        "ApplicationAuthentication.create",
    ]
    for event in server.events:
        assert list(event.headers) == [
            "x-rh-sources-account-number",
            "x-rh-sources-org-id",
            "x-rh-identity",
            "event_type",
            "encoding",
        ]
        assert event.headers["x-rh-sources-account-number"] == ACCOUNT
        assert event.headers["x-rh-sources-org-id"] == ORG
        assert event.headers["x-rh-identity"] == admin.identity
        assert event.headers["event_type"] == event.event_type and event.headers["encoding"] == "json"
        assert event.key == ORG
        assert "***" in repr(event) and admin.identity not in repr(event)
    source, app, auth, link = (e.body for e in server.events)
    assert source["id"] == sid and source["source_type_id"] == 3 and source["tenant"] == ""
    assert EVENT_TIME.match(source["created_at"]) and source["paused_at"] is None
    assert app == {
        "id": app_id,
        "created_at": app["created_at"],
        "updated_at": app["updated_at"],
        "paused_at": None,
        "availability_status": "in_progress",
        "last_checked_at": None,
        "last_available_at": None,
        "availability_status_error": None,
        "extra": {"resource_group": "rg", "storage_account": "sa", "subscription_id": "sub-1"},
        "superkey_data": None,
        "source_id": sid,
        "application_type_id": 2,
        "tenant": ACCOUNT,
    }
    assert EVENT_TIME.match(app["created_at"])
    assert auth["id"] == auth_id and isinstance(auth["id"], str)
    assert auth["created_at"] == "0001-01-01T00:00:00Z" and auth["version"] == ""
    assert (auth["authtype"], auth["username"], auth["resource_type"]) == (
        "tenant_id_client_id_client_secret",
        "client-1",
        "Application",
    )
    assert (auth["resource_id"], auth["source_id"]) == (app_id, sid)
    assert auth["extra"] == {"azure": {"tenant_id": "tenant-1"}} and "password" not in auth
    assert (link["application_id"], link["authentication_id"]) == (app_id, int(auth_id))


def test_header_only_caller_gets_generated_identity(server: StandInServer) -> None:
    psk_only = StandInAdmin(server.url, org_id=ORG, account="", identity="")
    psk_only.create_source("generated", "openshift", source_ref="c1")
    (event,) = server.events
    assert list(event.headers) == ["x-rh-sources-org-id", "x-rh-identity", "event_type", "encoding"]
    assert decode_identity(event.headers["x-rh-identity"]) == {
        "identity": {"org_id": ORG, "internal": {"org_id": ""}, "type": "System"},
        "entitlements": None,
    }


def test_validation_errors(server: StandInServer, admin: StandInAdmin) -> None:
    sat = admin.create_source("sat", "satellite")
    with pytest.raises(AdminError, match="source name already exists in same tenant"):
        admin.create_source("sat", "amazon")
    with pytest.raises(AdminError, match="source type is not compatible") as err:
        admin.add_cost_application(sat["id"])
    assert err.value.status == 400
    gcp = admin.create_cost_source("gcp-local", "gcp", bucket="/tmp/gcp")
    with pytest.raises(AdminError, match="Application of application type = 2 already exists for the source id"):
        admin.add_cost_application(gcp["source"]["id"])
    app_id = gcp["application"]["id"]
    with pytest.raises(AdminError, match="bad request"):
        admin.set_application_status(app_id, "broken")
    with pytest.raises(AdminError, match="resource_type"):
        admin.add_authentication(app_id, "arn", "x", resource_type="Nothing")
    auth = admin.add_authentication(gcp["source"]["id"], "token", "t", resource_type="source")
    assert auth["resource_type"] == "Source"
    with pytest.raises(TypeError):
        admin.create_cost_source("aws-local", "no bucket")
    assert not any(e.body.get("name") == "no bucket" for e in server.events)


def test_status_patch_extra_and_cascade(server: StandInServer, admin: StandInAdmin) -> None:
    created = admin.create_cost_source("aws-local", "local", bucket="/data/cur", external_id="ext")
    sid, app_id = created["source"]["id"], created["application"]["id"]
    server.events.clear()
    admin.set_application_status(app_id, "unavailable", "Access denied")
    source = admin.get_source(sid)
    assert source["availability_status"] == "unavailable"
    assert server.status_patches() == [
        (int(app_id), {"availability_status": "unavailable", "availability_status_error": "Access denied"}),
    ]
    app = admin.update_application_extra(app_id, {"bucket": "/data/other"})
    assert app["extra"] == {"bucket": "/data/other"}  # replaced, not merged
    assert app["availability_status_error"] == "Access denied"
    assert [e.event_type for e in server.events] == ["Application.update", "Application.update"]
    admin.pause_source(sid)
    admin.unpause_source(sid)
    server.events.clear()
    admin.delete_source(sid)
    assert [e.event_type for e in server.events] == [
        "ApplicationAuthentication.destroy",
        "Application.destroy",
        "Source.destroy",
        "Authentication.destroy",
    ]
    assert all(e.body["tenant"] == ACCOUNT for e in server.events)
    assert get(server, f"{API}/sources/{sid}").status_code == 404
    assert get(server, f"{API}/authentications").json()["meta"]["count"] == 0


def test_pause_events_and_application_delete(server: StandInServer, admin: StandInAdmin) -> None:
    created = admin.create_cost_source("gcp", "gcp", dataset="ds", project_id="proj")
    server.events.clear()
    admin.pause_source(created["source"]["id"])
    admin.unpause_source(created["source"]["id"])
    assert [e.event_type for e in server.events] == [
        "Source.pause",
        "Application.pause",
        "Source.unpause",
        "Application.unpause",
    ]
    server.events.clear()
    admin.delete_application(created["application"]["id"])
    assert [e.event_type for e in server.events] == [
        "ApplicationAuthentication.destroy",
        "Application.destroy",
        "Authentication.destroy",
    ]
    assert get(server, f"{API}/sources/{created['source']['id']}").ok


def test_fault_injection(server: StandInServer, admin: StandInAdmin) -> None:
    server.inject_faults(status=503, count=2)
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    for _ in range(2):
        resp = get(server, f"{API}/application_types")
        assert resp.status_code == 503
        assert resp.json() == {"errors": [{"detail": "Service Unavailable", "status": "503"}]}
    assert get(server, f"{API}/application_types").status_code == 200
    app_id = admin.create_cost_source("ocp", "c")["application"]["id"]
    server.inject_faults(status=500, count=1)
    with pytest.raises(AdminError):
        admin.set_application_status(app_id, "available")
    admin.set_application_status(app_id, "available")
    assert len(server.status_patches()) == 2
    assert server.status_patches(only_successful=True) == [
        (int(app_id), {"availability_status": "available", "availability_status_error": ""}),
    ]
    assert [r.status for r in server.requests[:3]] == [503, 503, 200]


def test_stop_and_start_on_the_same_port(server: StandInServer, admin: StandInAdmin) -> None:
    sid = admin.create_source("persisted", "amazon")["id"]
    port = server.port
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=2)
    server.start()
    assert server.port == port
    assert get(server, f"{API}/sources/{sid}").json()["name"] == "persisted"
    assert admin.create_source("after restart", "amazon")["id"] == str(int(sid) + 1)


def test_command_line_serves_until_sigterm() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "koku_devtools.platform_sources", "--port", str(port), "--log-level", "WARNING"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).text == "OK":
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "stand-in did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_connections_are_kept_alive_and_closed_on_stop() -> None:
    import http.client

    srv = StandInServer().start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        answers = []
        for _ in range(3):  # several requests over one connection
            conn.request("GET", f"{API}/source_types", headers=READ)
            response = conn.getresponse()
            answers.append((response.version, response.status, int(response.getheader("Content-Length"))))
            assert len(response.read()) == answers[-1][2]
        assert [a[:2] for a in answers] == [(11, 200)] * 3
        local = conn.sock.getsockname()
        conn.request("PATCH", f"{API}/applications/999", body=b"{}", headers=READ)  # an error, still kept
        response = conn.getresponse()
        assert response.status == 404 and len(response.read()) == int(response.getheader("Content-Length"))
        conn.request("HEAD", "/health")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert conn.sock.getsockname() == local
        srv.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):  # no answer once stopped
            conn.request("GET", "/health")
            conn.getresponse()
        conn.close()
    finally:
        srv.stop()


def test_connections_beyond_the_cap_wait_for_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.client
    import threading

    from koku_devtools.platform_sources import http_server as server_module

    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 1)
    srv = StandInServer().start()
    try:
        first = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        first.request("GET", "/health")
        assert first.getresponse().read() == b"OK"  # kept alive: it holds the only slot
        answered = threading.Event()

        def second() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().read() == b"OK":
                answered.set()
            conn.close()

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert not answered.wait(0.5)
        first.close()  # frees the slot
        assert answered.wait(5)
        thread.join(5)
        # A serve loop waiting for a slot does not hold up stop().
        held = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        held.request("GET", "/health")
        held.getresponse().read()
        waiting = socket.create_connection(("127.0.0.1", srv.port))
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 3
        waiting.close()
        held.close()
    finally:
        srv.stop()
