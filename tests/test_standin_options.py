"""The stand-in's options for benchmarks: added latency, a bounded request log, the keep-alive time."""

from __future__ import annotations

import http.client
import time

import pytest
import requests

from koku_devtools.platform_sources import StandInAdmin, StandInServer


def _timed_list(server: StandInServer) -> float:
    started = time.monotonic()
    requests.get(f"{server.url}/api/sources/v3.1/source_types", timeout=5).raise_for_status()
    return time.monotonic() - started


def test_latency_is_added_to_api_answers_and_changes_at_run_time() -> None:
    with StandInServer(latency_ms=200) as server:
        assert _timed_list(server) >= 0.2
        requests.post(f"{server.url}/_standin/latency", json={"ms": 0}, timeout=5).raise_for_status()
        assert server.latency_ms == 0
        assert _timed_list(server) < 0.2
        started = time.monotonic()
        assert requests.get(f"{server.url}/health", timeout=5).text == "OK"  # never delayed
        assert time.monotonic() - started < 0.2


def test_request_log_limit_keeps_the_latest_requests() -> None:
    with StandInServer(request_log_limit=2) as server:
        admin = StandInAdmin(server.url)
        admin.create_cost_source("ocp", "one cluster")  # four requests: two type lookups, two writes
        assert [(r.method, r.path.rsplit("/", 1)[1]) for r in server.requests] == [
            ("GET", "application_types"),
            ("POST", "applications"),
        ]
        assert [e.event_type for e in server.events] == ["Source.create", "Application.create"]
        admin.close()


def test_idle_connections_end_after_the_keep_alive_time() -> None:
    with StandInServer(keep_alive_seconds=0.3, listen_backlog=64) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().read() == b"OK"
        time.sleep(0.8)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("GET", "/health")
            conn.getresponse()
        conn.close()
