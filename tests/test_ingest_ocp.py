"""OpenShift payloads and ingestion: safe unpacking, report types, summary totals, no double counting."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from koku_dagster.providers import ocp
from koku_dagster.providers.ocp_payload import PayloadManifest, extract_payload, parse_manifest, read_manifest
from koku_dagster.reports.errors import (
    CorruptPayloadError,
    IngestError,
    PayloadDownloadError,
    PayloadTooLargeError,
    ReportFileMissingError,
    ReportFormatError,
    UnsafePayloadError,
)
from koku_dagster.uploads.download import FETCH_FAILED, UrlPolicy, fetch_payload
from koku_devtools.payloads import build_payload

CLUSTER = "test-cluster"
PROVIDER = "7d3c9a52-2f0e-4b8a-9b61-0c1e2d3f4a5b"
SCHEMA = "org1234567"
MONTH = date(2026, 10, 1)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nise ``--insights-upload`` output for two days (Oct 1-2)."""
    scratch = tmp_path_factory.mktemp("nise")
    upload = scratch / "upload"
    upload.mkdir()
    nise = Path(sys.executable).with_name("nise")
    subprocess.run(
        [
            str(nise),
            "report",
            "ocp",
            "-s",
            "2026-10-01",
            "-e",
            "2026-10-03",
            "--ocp-cluster-id",
            CLUSTER,
            "--insights-upload",
            str(upload),
        ],
        cwd=scratch,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (manifest,) = upload.glob(f"{CLUSTER}/*/manifest.json")
    return manifest.parent


@pytest.fixture(scope="module")
def payload(report_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_payload(report_dir, tmp_path_factory.mktemp("payload") / "payload.tar.gz")


def _variant(report_dir: Path, out: Path, max_hour: int, day: str = "") -> Path:
    """A payload under a new uuid: only the rows of hours < ``max_hour`` of each day (of ``day`` only, if given)."""
    work = out.with_suffix(".d")
    work.mkdir()
    doc = json.loads((report_dir / "manifest.json").read_text())
    doc["uuid"] = str(uuid.uuid4())
    names = []
    for name in doc["files"]:
        with (report_dir / name).open(newline="") as src, (work / f"{doc['uuid']}_{name}").open("w", newline="") as dst:
            reader, writer = csv.DictReader(src), None
            writer = csv.DictWriter(dst, reader.fieldnames or [])
            writer.writeheader()
            writer.writerows(
                r for r in reader if int(r["interval_start"][11:13]) < max_hour and r["interval_start"].startswith(day)
            )
        names.append(f"{doc['uuid']}_{name}")
    doc["files"] = names
    (work / "manifest.json").write_text(json.dumps(doc))
    return build_payload(work, out)


def _ingest(tar: Path, out_root: Path) -> ocp.PayloadResult:
    manifest = read_manifest(tar)
    files = extract_payload(tar, Path(tempfile.mkdtemp(dir=out_root.parent)), manifest)
    result = ocp.convert_payload(files, manifest, schema=SCHEMA, provider_uuid=PROVIDER, out_root=out_root)
    work = out_root.parent / "work"
    ocp.build_daily(schema=SCHEMA, provider_uuid=PROVIDER, month=MONTH, out_root=out_root, work_dir=work)
    ocp.build_summary(
        schema=SCHEMA, provider_uuid=PROVIDER, cluster_id=CLUSTER, month=MONTH, out_root=out_root, work_dir=work
    )
    return result


def _raw_pod_sums(report_dir: Path) -> dict[str, Decimal]:
    """Independent exact sums over the raw pod CSVs (csv module and Decimal)."""
    columns = ocp._RAW_POD
    sums = dict.fromkeys(columns, Decimal(0))
    for path in report_dir.glob("*.csv"):
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if "pod_usage_cpu_core_seconds" not in (reader.fieldnames or []):
                continue
            for row in reader:
                for c in columns:
                    sums[c] += Decimal(row[c] or 0)
    return sums


def _assert_matches_raw(totals: ocp.MonthTotals, raw: dict[str, Decimal]) -> None:
    hour, gib_hour = Decimal(3600), Decimal(3600 * 2**30)
    expected = {
        "pod_usage_cpu_core_hours": raw["pod_usage_cpu_core_seconds"] / hour,
        "pod_request_cpu_core_hours": raw["pod_request_cpu_core_seconds"] / hour,
        "pod_usage_memory_gigabyte_hours": raw["pod_usage_memory_byte_seconds"] / gib_hour,
        "pod_request_memory_gigabyte_hours": raw["pod_request_memory_byte_seconds"] / gib_hour,
    }
    for column, want in expected.items():
        assert abs(getattr(totals, f"summary_{column}") - want) < Decimal("1e-6"), column
    assert totals.usage_matches


def _totals(out_root: Path) -> ocp.MonthTotals:
    return ocp.month_totals(schema=SCHEMA, provider_uuid=PROVIDER, month=MONTH, out_root=out_root)


# --- manifest and safe extraction ----------------------------------------------------------------


def test_manifest_is_read_without_extracting(payload: Path, report_dir: Path) -> None:
    before = set(payload.parent.iterdir())
    manifest = read_manifest(payload)
    assert set(payload.parent.iterdir()) == before
    doc = json.loads((report_dir / "manifest.json").read_text())
    assert manifest.uuid == doc["uuid"] and manifest.cluster_id == CLUSTER
    assert manifest.files == tuple(doc["files"]) and manifest.months == (MONTH,)
    assert manifest.start is not None and manifest.start.date() == MONTH


def test_month_end_rule() -> None:
    doc = {
        "uuid": "u",
        "cluster_id": "c",
        "date": "2026-10-30T00:00:00+00:00",
        "files": [],
        "start": "2026-10-30T00:00:00+00:00",
        "end": "2026-11-01T00:00:00+00:00",
    }
    manifest = parse_manifest(doc)
    assert manifest.end is not None and manifest.end.date() == date(2026, 10, 31)
    assert manifest.months == (MONTH,)


def _tarball(path: Path, members: list[tarfile.TarInfo], manifest_files: list[str] | None = None) -> Path:
    manifest = json.dumps(
        {"uuid": "u", "cluster_id": "c", "date": "2026-10-01T00:00:00+00:00", "files": manifest_files or []}
    ).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for member in members:
            data = b"x" * member.size if member.isreg() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 3, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.linkname = link
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("../evil.csv"),
        _member("a/../../evil.csv"),
        _member("/etc/evil.csv"),
        _member("link.csv", tarfile.SYMTYPE, link="/etc/passwd"),
        _member("hard.csv", tarfile.LNKTYPE, link="manifest.json"),
        _member("fifo", tarfile.FIFOTYPE),
        _member("dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo", "device"],
)
def test_hostile_members_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    tar = _tarball(tmp_path / "bad.tar.gz", [member])
    manifest = read_manifest(tar)  # read up to the manifest only; extraction checks every member
    dest = tmp_path / "sub" / "dest"
    with pytest.raises(UnsafePayloadError):
        extract_payload(tar, dest, manifest)
    assert not dest.exists() and not (tmp_path / "sub" / "evil.csv").exists() and not (tmp_path / "evil.csv").exists()


def test_manifest_with_unsafe_file_name_is_refused(tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "bad.tar.gz", [], manifest_files=["../x.csv"])
    with pytest.raises(UnsafePayloadError):
        read_manifest(tar)


@pytest.mark.parametrize("uuid", ["../../etc", "a/b", ".hidden", "x" * 65, "spaces here"])
def test_manifest_uuid_must_be_a_plain_identifier(uuid: str) -> None:
    """The uuid names the payload's day files and archive folder."""
    with pytest.raises(UnsafePayloadError):
        parse_manifest({"uuid": uuid, "cluster_id": "c", "date": "2026-10-01", "files": []})
    assert parse_manifest({"uuid": "0f2c-ab_9", "cluster_id": "c", "date": "2026-10-01"}).uuid == "0f2c-ab_9"


def test_size_and_member_limits(tmp_path: Path, payload: Path) -> None:
    manifest = read_manifest(payload)
    with pytest.raises(PayloadTooLargeError):
        extract_payload(payload, tmp_path / "a", manifest, max_total_bytes=10_000)
    with pytest.raises(PayloadTooLargeError):
        extract_payload(payload, tmp_path / "b", manifest, max_members=3)
    big = _tarball(tmp_path / "many.tar.gz", [_member(f"f{i}.csv") for i in range(20)])
    with pytest.raises(PayloadTooLargeError):
        extract_payload(big, tmp_path / "c", read_manifest(big), max_members=10)
    assert not (tmp_path / "c").exists()


def test_manifest_listing_a_missing_file(tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "p.tar.gz", [_member("a.csv")], manifest_files=["a.csv", "b.csv"])
    with pytest.raises(ReportFileMissingError, match="b.csv"):
        extract_payload(tar, tmp_path / "dest", read_manifest(tar))


def test_corrupt_tarball(tmp_path: Path, payload: Path) -> None:
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all" * 100)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(payload.read_bytes()[: payload.stat().st_size // 2])
    with pytest.raises(CorruptPayloadError):
        read_manifest(garbage)
    manifest = read_manifest(truncated)  # the manifest comes first and is intact
    with pytest.raises(CorruptPayloadError):
        extract_payload(truncated, tmp_path / "dest", manifest)
    assert not (tmp_path / "dest").exists()


# --- fetching ------------------------------------------------------------------------------------


def _fetch(url: str, dest: Path, *, roots: tuple[Path, ...] = (), allow: tuple[str, ...] = (), **kw: Any) -> Path:
    limits = {"max_bytes": 1 << 30, "timeout": 5} | kw
    return fetch_payload(url, dest, policy=UrlPolicy(allow, roots), **limits)


def test_file_urls(tmp_path: Path, payload: Path) -> None:
    root = payload.parent
    got = _fetch(payload.as_uri(), tmp_path / "a.tar.gz", roots=(root,))
    assert got.read_bytes() == payload.read_bytes()
    with pytest.raises(PayloadDownloadError, match=re.escape(FETCH_FAILED)):
        _fetch(payload.as_uri(), tmp_path / "b.tar.gz", roots=(tmp_path / "elsewhere",))
    with pytest.raises(PayloadDownloadError, match=re.escape(FETCH_FAILED)):
        _fetch(f"file://{root}/../{root.name}/../../etc/passwd", tmp_path / "c", roots=(root,))
    with pytest.raises(PayloadDownloadError, match=re.escape(FETCH_FAILED)):
        _fetch("ftp://example.com/p.tar.gz", tmp_path / "d", max_bytes=1)
    with pytest.raises(PayloadTooLargeError):
        _fetch(payload.as_uri(), tmp_path / "e", roots=(root,), max_bytes=100)
    assert not (tmp_path / "e").exists()


@pytest.fixture
def http_root(payload: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(payload.parent))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_download_with_size_limit(tmp_path: Path, payload: Path, http_root: str) -> None:
    url = f"{http_root}/{payload.name}?token=secret"
    got = _fetch(url, tmp_path / "p.tar.gz", allow=(http_root,))  # loopback: only when allow-listed
    assert got.read_bytes() == payload.read_bytes()
    with pytest.raises(PayloadTooLargeError) as too_large:
        _fetch(url, tmp_path / "q.tar.gz", allow=(http_root,), max_bytes=1000)
    assert "secret" not in str(too_large.value) and not (tmp_path / "q.tar.gz").exists()
    with pytest.raises(PayloadDownloadError):
        _fetch(f"{http_root}/missing.tar.gz", tmp_path / "r", allow=(http_root,), max_bytes=1000)


# --- report types and ingestion ------------------------------------------------------------------


def test_report_types_detected_for_every_nise_file(report_dir: Path) -> None:
    found = set()
    for path in report_dir.glob("*.csv"):
        with path.open(newline="") as f:
            found.add(ocp.detect_report_type(next(csv.reader(f)), path.name).name)
    assert found == {t.name for t in ocp.REPORT_TYPES}
    with pytest.raises(ReportFormatError, match="odd.csv"):
        ocp.detect_report_type(["interval_start", "something"], "odd.csv")


def test_summary_equals_raw_totals(tmp_path: Path, payload: Path, report_dir: Path) -> None:
    out = tmp_path / "store"
    result = _ingest(payload, out)
    assert result.days_covered == (date(2026, 10, 1), date(2026, 10, 2))
    assert {d.outcome for d in result.days} == {"written"}
    totals = _totals(out)
    _assert_matches_raw(totals, _raw_pod_sums(report_dir))
    assert totals.days_loaded == 2 and totals.uncast_cells == 0 and totals.summary_rows > 0
    # pod labels are JSON text without the label_ prefix
    import duckdb

    summary = ocp.summary_dir(out, ocp.SUMMARY_TABLE, PROVIDER, MONTH)
    labels, sources = (
        duckdb.connect()
        .execute(
            f"SELECT any_value(pod_labels), list(DISTINCT data_source) FROM read_parquet('{summary}/*.parquet')"
            " WHERE data_source = 'Pod' OR data_source = 'Storage'"
        )
        .fetchone()
    )
    assert not any(k.startswith("label_") for k in json.loads(labels)) and set(sources) == {"Pod", "Storage"}
    # re-running the same payload changes nothing
    again = _ingest(payload, out)
    assert {d.outcome for d in again.days} == {"replaced"}
    assert _totals(out) == totals


def test_no_double_count(tmp_path: Path, payload: Path, report_dir: Path) -> None:
    full = _raw_pod_sums(report_dir)
    out = tmp_path / "store"
    _ingest(payload, out)
    fewer = _ingest(_variant(report_dir, tmp_path / "fewer.tar.gz", 12), out)
    assert {d.outcome for d in fewer.days} == {"skipped"} and fewer.months_changed == ()
    _assert_matches_raw(_totals(out), full)

    out2 = tmp_path / "store2"
    partial = _ingest(_variant(report_dir, tmp_path / "partial.tar.gz", 12), out2)
    assert {d.hours for d in partial.days if d.report_type == "pod_usage"} == {12}
    assert _totals(out2).summary_pod_usage_cpu_core_hours < _totals(out).summary_pod_usage_cpu_core_hours
    more = _ingest(payload, out2)
    assert {d.outcome for d in more.days if d.report_type == "pod_usage"} == {"replaced"}
    _assert_matches_raw(_totals(out2), full)
    assert len(list(ocp.ocp_line_items_dir(out2, SCHEMA, "pod_usage", PROVIDER, MONTH).glob("*.parquet"))) == 2


def test_unknown_report_type_aborts_before_writing(tmp_path: Path, report_dir: Path) -> None:
    work = tmp_path / "odd"
    shutil.copytree(report_dir, work)
    doc = json.loads((work / "manifest.json").read_text())
    (work / "odd.csv").write_text("interval_start,foo\n2026-10-01 00:00:00 +0000 UTC,1\n")
    doc["files"].append("odd.csv")
    (work / "manifest.json").write_text(json.dumps(doc))
    tar = build_payload(work, tmp_path / "odd.tar.gz")
    manifest = read_manifest(tar)
    files = extract_payload(tar, tmp_path / "x", manifest)
    with pytest.raises(ReportFormatError, match="odd.csv"):
        ocp.convert_payload(files, manifest, schema=SCHEMA, provider_uuid=PROVIDER, out_root=tmp_path / "store")
    assert not (tmp_path / "store" / "data").exists()


def test_hostile_member_before_the_manifest_is_refused_when_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "first.tar.gz"
    manifest = json.dumps({"uuid": "u", "cluster_id": "c", "date": "2026-10-01T00:00:00+00:00", "files": []}).encode()
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(_member("../evil.csv"), io.BytesIO(b"x" * _member("../evil.csv").size))
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    with pytest.raises(UnsafePayloadError):
        read_manifest(path)


def test_a_bad_file_of_a_later_report_type_installs_nothing(tmp_path: Path, report_dir: Path) -> None:
    """Storage usage converts before pod usage; a damaged pod file still leaves every partition alone."""
    work = tmp_path / "damaged"
    shutil.copytree(report_dir, work)
    assert [t.name for t in ocp.REPORT_TYPES][:2] == ["storage_usage", "pod_usage"]
    pod = next(p for p in work.glob("*.csv") if "pod_usage_cpu_core_seconds" in p.read_text().split("\n", 1)[0])
    with pod.open("a") as handle:
        handle.write("a,b,c\n")  # a row of the wrong width
    tar = build_payload(work, tmp_path / "damaged.tar.gz")
    manifest = read_manifest(tar)
    files = extract_payload(tar, tmp_path / "x", manifest)
    with pytest.raises(IngestError):
        ocp.convert_payload(files, manifest, schema=SCHEMA, provider_uuid=PROVIDER, out_root=tmp_path / "store")
    assert not list((tmp_path / "store").rglob("*.parquet"))


def test_each_partition_is_prepared_before_its_kept_files_are_read(tmp_path: Path, report_dir: Path) -> None:
    """An s3:// store's mirror may lack a month's kept day files: ``prepare_partition`` brings them
    in before the month is rewritten, so a later payload keeps the days it does not replace."""
    out, remote = tmp_path / "store", tmp_path / "remote"
    half = _variant(report_dir, tmp_path / "half.tar.gz", max_hour=12)
    first = ocp.convert_payload(*_extracted(half, tmp_path / "a"), schema=SCHEMA, provider_uuid=PROVIDER, out_root=out)
    assert {d.day for d in first.days} == {date(2026, 10, 1), date(2026, 10, 2)}
    pod = ocp.ocp_line_items_dir(out, SCHEMA, "pod_usage", PROVIDER, MONTH)
    shutil.copytree(out, remote)
    shutil.rmtree(out)  # a fresh mirror: nothing local

    def fetch(partition: Path) -> None:
        source = remote / partition.relative_to(out)
        if source.is_dir() and not partition.exists():
            shutil.copytree(source, partition)

    prepared: list[Path] = []
    day_one = _variant(report_dir, tmp_path / "day1.tar.gz", max_hour=24, day="2026-10-01")
    second = ocp.convert_payload(
        *_extracted(day_one, tmp_path / "b"),
        schema=SCHEMA,
        provider_uuid=PROVIDER,
        out_root=out,
        prepare_partition=lambda p: (prepared.append(p), fetch(p)),
    )
    assert {(d.day, d.outcome) for d in second.days if d.report_type == "pod_usage"} == {
        (date(2026, 10, 1), "replaced")
    }
    assert pod in prepared
    footers = [json.loads(pq.read_metadata(p).metadata[ocp.FOOTER_KEY]) for p in pod.glob("*.parquet")]
    assert sorted((f["day"], f["hours"]) for f in footers) == [("2026-10-01", 24), ("2026-10-02", 12)]


def _extracted(tar: Path, dest: Path) -> tuple[dict[str, Path], PayloadManifest]:
    manifest = read_manifest(tar)
    return extract_payload(tar, dest, manifest), manifest


def test_unlisted_members_count_against_the_unpacked_limit(tmp_path: Path) -> None:
    """Reading past a member costs as much as extracting it: a huge unlisted member is refused."""
    tar = _tarball(tmp_path / "padded.tar.gz", [_member("padding.bin", size=50_000)], manifest_files=[])
    manifest = read_manifest(tar)
    with pytest.raises(PayloadTooLargeError, match="unpacked"):
        extract_payload(tar, tmp_path / "dest", manifest, max_total_bytes=10_000)
    assert extract_payload(tar, tmp_path / "ok", manifest, max_total_bytes=100_000) == {}


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Promises a megabyte and sends a few bytes now and then: each read waits, none times out."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        for _ in range(50):
            try:
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
            except OSError:
                return
            threading.Event().wait(0.2)

    def log_message(self, *args: object) -> None:
        pass


def test_a_trickling_download_is_cut_at_its_deadline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/p.tar.gz?sig=secret"
        with pytest.raises(PayloadDownloadError, match=re.escape(FETCH_FAILED)) as slow:
            _fetch(url, tmp_path / "p.tar.gz", allow=(url.split("/p.")[0],), max_seconds=0.6)
        assert "secret" not in str(slow.value) and not (tmp_path / "p.tar.gz").exists()
        assert "took longer than 0.6 s" in caplog.text  # the reason is in the log only
    finally:
        server.shutdown()
        server.server_close()
