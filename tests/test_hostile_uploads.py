# ruff: noqa: F811  (fixtures imported from other test modules)
"""Hostile OpenShift payloads and report names: each case is an attack or a mistake, with its safe outcome.

URL cases go through the real path (Tansu announcement -> ``ocp_upload_sensor`` -> ``ocp_payload_ingest``
run -> recorded reason and validation result) and a real listener shows no request reached it.
"""

from __future__ import annotations

import gzip
import http.server
import io
import itertools
import json
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.providers import aws, ocp
from koku_dagster.providers.aws import LocalCurReports, S3ReportSource
from koku_dagster.providers.ocp_payload import parse_manifest, read_manifest
from koku_dagster.reports.archive import archive_file
from koku_dagster.reports.errors import ManifestError, PayloadTooLargeError, ReportTooLargeError
from koku_dagster.reports.month_tables import column_sums
from koku_dagster.uploads.download import FETCH_FAILED, is_public
from koku_devtools.payloads import build_payload
from koku_devtools.platform_sources.admin import identity_header
from koku_devtools.services import SeaweedS3
from koku_devtools.uploads import announcement_body
from tests.resources import object_store_resource
from tests.test_ingest_aws import ingest, nise_random  # noqa: F401  (session fixture)
from tests.test_ocp_uploads import ORG, SCHEMA, World, nise_ocp, world  # noqa: F401  (fixtures)

REFUSED = f"PayloadDownloadError: {FETCH_FAILED}"
_ids = itertools.count()


# --- a listener that counts what reaches it ---------------------------------------------------------


@dataclass
class Listener:
    """A real HTTP server; ``hits`` lists the paths requested. ``routes`` maps a path to
    (status, headers, body)."""

    host: str = "127.0.0.1"
    hits: list[str] = field(default_factory=list)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    port: int = 0

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextmanager
def serving(state: Listener) -> Iterator[Listener]:
    """Serve ``state``'s routes on its host (a free port) until the block ends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            status, headers, body = state.routes.get(self.path.split("?")[0], (404, {}, b"no"))
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in state.host else socket.AF_INET
        daemon_threads = True

    server = Server((state.host, 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    with serving(Listener()) as state:
        yield state


@pytest.fixture
def listener6() -> Iterator[Listener]:
    with serving(Listener(host="::1")) as state:
        yield state


@dataclass
class Hostile:
    """The uploads world with an allow-list, and one call for announce -> tick -> run."""

    w: World
    allowlist: str = ""

    def resources(self) -> dict[str, Any]:
        store = object_store_resource(
            url=self.w.h.store.url, local_bucket_roots=str(self.w.h.buckets), upload_url_allowlist=self.allowlist
        )
        return self.w.resources() | {"object_store": store}

    def process(self, url: str, **body: Any) -> dict[str, Any]:
        """Announce ``url``, let the sensor ask for the run, run it; return the upload's row."""
        request_id = f"hostile-{next(_ids)}"
        self.w.announce(announcement_body(url, request_id=request_id, org_id=ORG) | body)
        (request,) = [r for r in self.w.tick().run_requests if r.run_key == f"ocp-payload:{request_id}"]
        ocp_payload_ingest_run(self, request)
        return self.w.upload(request_id)


def ocp_payload_ingest_run(hostile: Hostile, request: dg.RunRequest) -> None:
    from koku_dagster.assets.ocp_uploads import ocp_payload_ingest

    ocp_payload_ingest.execute_in_process(
        run_config=request.run_config, resources=hostile.resources(), instance=hostile.w.instance, raise_on_error=False
    )


@pytest.fixture
def hostile(world: World) -> Hostile:
    return Hostile(world)


def _refused(hostile: Hostile, row: dict[str, Any]) -> None:
    """Failure with the fixed reason, answered on the validation topic, nothing written."""
    assert row["state"] == "failure" and row["reason"] == REFUSED
    assert row["validation_sent"]
    assert not hostile.w.store_files()
    assert hostile.w.h.table("reporting_common_costusagereportmanifest", "id") == []


# --- outbound URL policy ------------------------------------------------------------------------------


def test_metadata_endpoint_is_refused_without_connecting(hostile: Hostile) -> None:
    started = time.monotonic()
    row = hostile.process("http://169.254.169.254/latest/meta-data/iam/security-credentials/")
    _refused(hostile, row)
    assert time.monotonic() - started < 30  # no connect attempt waiting for a timeout


def test_loopback_port_is_refused_and_never_reached(hostile: Hostile, listener: Listener) -> None:
    listener.routes["/internal/admin"] = (200, {}, b"secret")
    _refused(hostile, hostile.process(f"{listener.base}/internal/admin"))
    assert listener.hits == []


def test_private_network_address_is_refused(hostile: Hostile) -> None:
    _refused(hostile, hostile.process("http://10.0.0.1:8080/p.tar.gz"))


def test_ipv6_loopback_is_refused(hostile: Hostile, listener6: Listener) -> None:
    _refused(hostile, hostile.process(f"{listener6.base}/p.tar.gz"))
    assert listener6.hits == []


@pytest.mark.parametrize(
    "host",
    ["localhost", "2130706433", "[::ffff:127.0.0.1]", "127.1", "0.0.0.0"],
)
def test_loopback_in_disguise_is_refused(hostile: Hostile, listener: Listener, host: str) -> None:
    _refused(hostile, hostile.process(f"http://{host}:{listener.port}/p.tar.gz"))
    assert listener.hits == []


def test_redirect_from_an_allowed_server_to_loopback_is_not_followed(hostile: Hostile, listener: Listener) -> None:
    with serving(Listener()) as internal:
        listener.routes["/p.tar.gz"] = (302, {"Location": f"{internal.base}/internal"}, b"")
        hostile.allowlist = listener.base
        _refused(hostile, hostile.process(f"{listener.base}/p.tar.gz"))
    assert listener.hits == ["/p.tar.gz"] and internal.hits == []


def test_redirect_loop_and_too_many_redirects_stop_after_three(hostile: Hostile, listener: Listener) -> None:
    hostile.allowlist = listener.base
    listener.routes["/loop"] = (301, {"Location": "/loop"}, b"")
    _refused(hostile, hostile.process(f"{listener.base}/loop"))
    assert listener.hits == ["/loop"] * 4  # the first request and three redirects
    listener.hits.clear()
    for n in range(6):
        listener.routes[f"/r{n}"] = (307, {"Location": f"/r{n + 1}"}, b"")
    _refused(hostile, hostile.process(f"{listener.base}/r0"))
    assert listener.hits == ["/r0", "/r1", "/r2", "/r3"]


def test_allow_listed_redirects_within_the_limit_are_followed(
    hostile: Hostile,
    listener: Listener,
    nise_ocp: Path,
) -> None:
    tarball = build_payload(nise_ocp, hostile.w.h.buckets / "x" / "p.tar.gz").read_bytes()
    listener.routes |= {
        "/a": (302, {"Location": "/b"}, b""),
        "/b": (303, {"Location": f"{listener.base}/payloads/p.tar.gz"}, b""),
        "/payloads/p.tar.gz": (200, {}, tarball),
    }
    hostile.allowlist = f"{listener.base}/a {listener.base}/b {listener.base}/payloads"
    row = hostile.process(f"{listener.base}/a")
    assert row["state"] == "success" and row["months"] == ["2026-10-01"]
    assert listener.hits == ["/a", "/b", "/payloads/p.tar.gz"]


def test_allow_list_prefixes_match_whole_hosts_ports_and_path_segments(hostile: Hostile, listener: Listener) -> None:
    hostile.allowlist = f"{listener.base}/payloads"
    for url in (f"{listener.base}/payloads-evil/p", f"{listener.base}/other", f"{listener.base}@10.0.0.1/payloads/p"):
        _refused(hostile, hostile.process(url))
    assert listener.hits == []


def test_refused_unreachable_closed_and_missing_read_the_same(hostile: Hostile, listener: Listener) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    hostile.allowlist = f"{listener.base} http://127.0.0.1:{closed_port}"
    reasons = {
        hostile.process(url)["reason"]
        for url in (
            "http://10.1.2.3/p.tar.gz",  # refused
            f"http://127.0.0.1:{closed_port}/p.tar.gz",  # allowed, closed port
            f"{listener.base}/missing.tar.gz",  # allowed, 404
            "http://no-such-host.invalid/p.tar.gz",  # unresolvable
            "gopher://127.0.0.1/x",  # another scheme
        )
    }
    assert reasons == {REFUSED}


def test_oversized_download_is_cut(hostile: Hostile, listener: Listener) -> None:
    listener.routes["/big.tar.gz"] = (200, {}, b"\0" * 4096)
    hostile.allowlist = listener.base
    request_id = f"big-{next(_ids)}"
    hostile.w.announce(announcement_body(f"{listener.base}/big.tar.gz", request_id=request_id, org_id=ORG))
    hostile.w.tick()
    from koku_dagster.uploads.processing import UploadLimits, process_upload

    outcome = process_upload(
        hostile.w.h.engine,
        request_id,
        object_store=hostile.w.h.store,
        url_policy=hostile.resources()["object_store"].url_policy(),
        work_dir=hostile.w.h.buckets.parent / "work",
        limits=UploadLimits(max_payload_bytes=1000),
    )
    assert outcome.upload.state == "failure" and outcome.upload.reason.startswith("PayloadTooLargeError:")
    assert not hostile.w.store_files()


def test_file_url_outside_the_roots_and_symlink_escape_are_refused(
    hostile: Hostile,
    nise_ocp: Path,
    tmp_path: Path,
) -> None:
    outside = build_payload(nise_ocp, tmp_path / "outside" / "p.tar.gz")
    link = hostile.w.h.buckets / "innocent.tar.gz"
    link.symlink_to(outside)
    _refused(hostile, hostile.process(outside.as_uri()))
    _refused(hostile, hostile.process(link.as_uri()))
    _refused(hostile, hostile.process(f"file://{hostile.w.h.buckets}/../outside/p.tar.gz"))


def test_file_url_into_another_orgs_local_folder_is_refused(
    hostile: Hostile,
    nise_ocp: Path,
) -> None:
    foreign = hostile.w.h.buckets / "org-b-aws"
    build_payload(nise_ocp, foreign / "p.tar.gz")
    engine = hostile.w.h.engine
    import sqlalchemy as sa

    from koku_dagster.infra.db.schema import customer, provider, provider_authentication, provider_billing_source
    from koku_dagster.infra.db.types import utcnow

    with engine.begin() as conn:
        cid = conn.execute(
            sa.insert(customer).values(
                org_id="7654321", schema_name="org7654321", date_created=utcnow(), date_updated=utcnow()
            )
        ).inserted_primary_key[0]
        aid = conn.execute(
            sa.insert(provider_authentication).values(credentials={}, fingerprint="org-b")
        ).inserted_primary_key[0]
        bid = conn.execute(
            sa.insert(provider_billing_source).values(data_source={"bucket": str(foreign)}, fingerprint="org-b")
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(provider).values(
                uuid="33333333-3333-4333-8333-333333333333",
                name="org b",
                type="AWS-local",
                customer_id=cid,
                authentication_id=aid,
                billing_source_id=bid,
                setup_complete=False,
                created_timestamp=utcnow(),
                active=True,
                paused=False,
            )
        )
    _refused(hostile, hostile.process((foreign / "p.tar.gz").as_uri()))


# --- announcements ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (identity_header("7654321", "10001"), "b64_identity names another org than org_id"),
        (None, "b64_identity is missing"),
        ("not base64!", "b64_identity is not base64 JSON"),
    ],
)
def test_identity_must_name_the_announced_org(
    hostile: Hostile, listener: Listener, identity: str | None, reason: str
) -> None:
    body = announcement_body(f"{listener.base}/p.tar.gz", request_id="forged", org_id=ORG)
    body["b64_identity"] = identity
    hostile.w.announce(body)
    result = hostile.w.tick()
    assert not result.run_requests
    assert [r["reason"] for r in hostile.w.h.table("sources_rejected_message", "id")] == [reason]
    assert hostile.w.h.table("ocp_payload_upload", "id") == [] and listener.hits == []


# --- payload contents ---------------------------------------------------------------------------------


def _variant(nise_ocp: Path, out: Path, manifest: dict[str, Any] | None = None, shift_days: int = 0) -> Path:
    """The nise payload with manifest fields changed and its rows moved by ``shift_days``."""
    folder = out / f"variant-{next(_ids)}"
    shutil.copytree(nise_ocp, folder)
    doc = json.loads((folder / "manifest.json").read_text()) | (manifest or {})
    (folder / "manifest.json").write_text(json.dumps(doc))
    if shift_days:
        for csv_file in folder.glob("*.csv"):
            text = csv_file.read_text()
            for day in range(1, 4):
                old = date(2026, 10, day)
                new = date.fromordinal(old.toordinal() + shift_days)
                text = text.replace(f"{old:%Y-%m-%d} ", f"{new:%Y-%m-%d} ")
            csv_file.write_text(text)
    tarball = out / f"{folder.name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:  # not build_payload: it checks the manifest
        for name in ("manifest.json", *doc["files"]):
            if (folder / name).exists():
                tar.add(folder / name, arcname=name)
    return tarball


def test_manifest_spanning_two_centuries_is_refused(hostile: Hostile, nise_ocp: Path) -> None:
    tar = _variant(nise_ocp, hostile.w.h.buckets, {"start": "1900-01-01T00:00:00Z", "end": "2100-11-02T00:00:00Z"})
    row = hostile.process(tar.as_uri())
    assert row["state"] == "failure" and row["reason"].startswith("ManifestError: manifest.json: start .. end spans")
    assert not hostile.w.store_files()
    with pytest.raises(ManifestError, match="end is before start"):
        parse_manifest(
            {"uuid": "u", "cluster_id": "c", "date": "2026-10-01", "start": "2026-10-02", "end": "2026-10-01"}
        )


def test_rows_outside_the_manifest_months_refuse_the_payload(hostile: Hostile, nise_ocp: Path) -> None:
    tar = _variant(nise_ocp, hostile.w.h.buckets, shift_days=40)  # rows in November, manifest October
    row = hostile.process(tar.as_uri())
    assert row["state"] == "failure" and "lie outside the months of the manifest" in row["reason"]
    assert not hostile.w.store_files()


@pytest.mark.parametrize("shift_days", [-365, 151])  # a year ago; five months ahead
def test_rows_outside_the_retention_window_are_not_written(
    hostile: Hostile,
    nise_ocp: Path,
    shift_days: int,
) -> None:
    start = date.fromordinal(date(2026, 10, 1).toordinal() + shift_days)
    month = {"start": f"{start}T00:00:00Z", "end": f"{start.replace(day=28)}T00:00:00Z"}
    tar = _variant(nise_ocp, hostile.w.h.buckets, month, shift_days=shift_days)
    row = hostile.process(tar.as_uri())
    assert row["state"] == "success" and row["months"] == []
    assert not hostile.w.store_files()  # neither line items nor archived CSV of that month


def test_many_days_keep_the_open_writers_bounded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nise_ocp: Path,
) -> None:
    monkeypatch.setattr(ocp, "MAX_OPEN_WRITERS", 3)
    opened: list[Any] = []
    peak: list[int] = []
    real = pq.ParquetWriter

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            opened.append(self)
            peak.append(sum(1 for w in opened if w.is_open))

    monkeypatch.setattr(ocp.pq, "ParquetWriter", Counting)
    header = next(p for p in nise_ocp.glob("*.csv") if "pod_usage_cpu_core_seconds" in p.read_text().split("\n")[0])
    lines = header.read_text().splitlines()
    cols = lines[0].split(",")
    row = dict(zip(cols, lines[1].split(","), strict=False))
    out = []
    for i in range(10 * 31):  # days interleaved: 1, 2, ..., 31, 1, 2, ...
        day = date(2026, 10, 1 + i % 31)
        values = row | {"interval_start": f"{day} 05:00:00 +0000 UTC", "pod_usage_cpu_core_seconds": "1"}
        out.append(",".join(values[c] for c in cols))
    csv_path = tmp_path / "pods.csv"
    csv_path.write_text("\n".join([lines[0], *out]) + "\n")
    manifest = parse_manifest(
        {"uuid": "many", "cluster_id": "c", "date": "2026-10-01T00:00:00Z", "files": ["pods.csv"]}
    )
    uuid = "44444444-4444-4444-8444-444444444444"
    result = ocp.convert_payload({"pods.csv": csv_path}, manifest, schema=SCHEMA, provider_uuid=uuid, out_root=tmp_path)
    assert len(result.days) == 31 and sum(d.rows for d in result.days) == 310
    assert max(peak) <= 3 + 1  # the day writers, and one merging a day's segments at the end
    assert len(opened) > 31 and not any(w.is_open for w in opened)  # days were evicted and merged
    totals = ocp.month_totals(schema=SCHEMA, provider_uuid=uuid, month=date(2026, 10, 1), out_root=tmp_path)
    assert totals.line_item_rows == 310 and totals.raw_pod_usage_cpu_core_seconds == Decimal(310)


def _bomb(path: Path, kind: bytes, declared: int) -> Path:
    """A gzip of one tar header declaring a ``kind`` (``L`` long name, ``x`` PAX) block of ``declared`` bytes."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    info.size = 0
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))[:512]
    block[124:136] = f"{declared:011o}\0".encode()
    block[148:156] = b"        "
    block[148:155] = f"{sum(block):06o}\0".encode()
    with gzip.open(path, "wb") as out:
        out.write(bytes(block) + b"\0" * (1 << 20))  # a megabyte of zeros compresses to a kilobyte
    return path


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE])
def test_header_bombs_are_refused_before_they_are_read(hostile: Hostile, kind: bytes) -> None:
    tar = _bomb(hostile.w.h.buckets / f"bomb-{kind.decode()}.tar.gz", kind, 8 << 30)
    assert tar.stat().st_size < 10_000
    with pytest.raises(PayloadTooLargeError):
        read_manifest(tar)
    row = hostile.process(tar.as_uri())
    assert row["state"] == "failure" and row["reason"].startswith("PayloadTooLargeError:")
    assert not hostile.w.store_files()


def test_payload_file_names_with_glob_characters_are_refused(hostile: Hostile, nise_ocp: Path) -> None:
    doc = json.loads((nise_ocp / "manifest.json").read_text())
    tar = _variant(nise_ocp, hostile.w.h.buckets, {"files": [*doc["files"], "pod*.csv"]})
    row = hostile.process(tar.as_uri())
    assert row["state"] == "failure" and row["reason"].startswith("UnsafePayloadError:")
    assert not hostile.w.store_files()


# --- literal file names, bounded reads and listings ---------------------------------------------------


def test_duckdb_reads_file_names_literally(tmp_path: Path) -> None:
    names = ["a*.parquet", "ab.parquet", "a?.parquet", "a[b].parquet", "a{b,c}.parquet", "a b.parquet"]
    for i, name in enumerate(names):
        pq.write_table(pa.table({"x": [float(10**i)]}), tmp_path / name)
    rows, (total,) = column_sums([tmp_path / "a*.parquet", tmp_path / "ab.parquet"], ["x"])
    assert (rows, total) == (2, Decimal(11))  # not 3 rows, 21 (the glob also read ab.parquet)
    rows, (total,) = column_sums([tmp_path / n for n in names], ["x"])
    assert (rows, total) == (6, Decimal(111111))


def test_aws_local_report_keys_with_glob_characters_give_exact_totals(
    nise_random: Path,
    tmp_path: Path,
) -> None:
    single = ingest(LocalCurReports(nise_random), tmp_path / "single")
    bucket = shutil.copytree(nise_random, tmp_path / "bucket")
    manifest_path = bucket / "cur/20261001-20261101/cur-Manifest.json"
    doc = json.loads(manifest_path.read_text())
    (key,) = doc["reportKeys"][:1]
    source = bucket / key.split("/", 1)[1] if not (bucket / key).exists() else bucket / key
    names = ["a*", "ab", "a?", "a[b]", "a{b,c}", "a b"]
    keys = []
    for name in names:
        target = source.with_name(f"{name}.csv.gz")
        shutil.copyfile(source, target)
        keys.append(str(Path(key).with_name(target.name)))
    doc["reportKeys"] = keys
    manifest_path.write_text(json.dumps(doc))
    many = ingest(LocalCurReports(bucket), tmp_path / "many")
    assert many.line_item_rows == len(names) * single.line_item_rows
    # a glob would have read a*.parquet as 2 files (7 in all): the totals are exactly 6 copies
    assert abs(many.summary_unblended_cost - len(names) * single.summary_unblended_cost) < Decimal("0.000001")
    assert abs(many.summary_unblended_cost - many.raw_unblended_cost) < Decimal("0.01")


def test_archive_of_an_oversized_report_file_is_refused(tmp_path: Path) -> None:
    class Files:
        def open_file(self, key: str) -> io.BytesIO:
            return io.BytesIO(b"x" * 5000)

    with pytest.raises(ReportTooLargeError):
        archive_file(Files(), "k", tmp_path / "a" / "k.csv", max_bytes=4096)  # type: ignore[arg-type]
    assert not (tmp_path / "a" / "k.csv").exists()


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(workdir=tmp_path_factory.mktemp("seaweed-hostile"), buckets=("koku", "cur")) as server:
        yield server


def test_oversized_s3_manifest_and_huge_listings_are_refused(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = seaweed.client("s3")
    client.put_object(
        Bucket="cur", Key="r/cur/20261001-20261101/cur-Manifest.json", Body=b" " * (aws.MAX_MANIFEST_BYTES + 1)
    )
    source = S3ReportSource(client, "cur", "r", "cur")
    with pytest.raises(ReportTooLargeError, match="exceeds"):
        source.find_manifest(date(2026, 10, 1))
    for n in range(5):
        client.put_object(Bucket="cur", Key=f"r/cur/20261001-20261101/part-{n}.csv", Body=b"x")
    monkeypatch.setattr(aws, "MAX_LISTED_KEYS", 3)
    with pytest.raises(ReportTooLargeError, match="more than 3 objects"):
        source.find_manifest(date(2026, 10, 1))


def test_retention_and_deletion_list_only_the_providers_own_folders(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in seaweed.aws_env().items():
        monkeypatch.setenv(key, value)
    mine, theirs = "55555555-5555-4555-8555-555555555555", "66666666-6666-4666-8666-666666666666"
    client = seaweed.client("s3")
    keys = [
        f"t/data/csv/org1/OCP/source={mine}/year=2026/month=06/x.csv",
        f"t/data/parquet/org1/OCP/pod_usage/source={mine}/year=2026/month=06/x.parquet",
        f"t/data/summary/reporting_ocpusagelineitem_daily_summary/source={mine}/year=2026/month=11/x.parquet",
    ] + [f"t/data/parquet/org2/AWS/source={theirs}/year=2026/month=06/{n}.parquet" for n in range(20)]
    for key in keys:
        client.put_object(Bucket="koku", Key=key, Body=b"x")
    store = ObjectStore("s3://koku/t", endpoint_url=seaweed.endpoint_url)
    listed: list[dict[str, Any]] = []
    made = ObjectStore.s3_client

    def spying(self: ObjectStore) -> Any:
        spy = made(self)
        spy.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: listed.append(params))
        return spy

    monkeypatch.setattr(ObjectStore, "s3_client", spying)
    assert store.delete_months_before(mine, date(2026, 8, 1)) == 2
    assert store.delete_provider_data(mine) == 1
    assert all(p.get("Delimiter") == "/" or f"source={mine}/" in p["Prefix"] for p in listed)
    left = [o["Key"] for o in client.list_objects_v2(Bucket="koku", Prefix="t/").get("Contents", [])]
    assert sorted(left) == sorted(keys[3:])


def test_public_address_rule() -> None:
    import ipaddress

    public = ["8.8.8.8", "2001:4860:4860::8888"]
    private = [
        "127.0.0.1",
        "10.1.1.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
        "ff02::1",
    ]
    assert all(is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public(ipaddress.ip_address(a)) for a in private)
