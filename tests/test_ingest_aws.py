"""AWS ingestion core on real nise CUR data: manifests, conversion, daily, summary, totals, bad input."""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import boto3
import nise
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koku_dagster.providers import aws
from koku_dagster.providers.aws import LocalCurReports, S3ReportSource, assume_role_credentials
from koku_dagster.providers.aws_cur import LINE_ITEM_SCHEMA, normalize_legacy
from koku_dagster.reports.errors import (
    CorruptReportError,
    ManifestError,
    ReportFileMissingError,
    ReportFormatError,
    UnsafeReportPathError,
)
from koku_dagster.reports.paths import daily_dir, line_items_dir, summary_dir

OCTOBER = date(2026, 10, 1)
SCHEMA = "org1234567"
UUID = "0e8b1d3c-55f4-4c1e-9a59-1d2b7c4e6f80"
NISE = str(Path(sys.executable).with_name("nise"))


def _nise(scratch: Path, *args: str) -> None:
    scratch.mkdir(parents=True, exist_ok=True)  # nise writes temporary files into its cwd
    subprocess.run([NISE, *args], cwd=scratch, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def nise_random(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random nise CUR (Oct 1-3, 2026; ~18k rows, resource tags and cost categories)."""
    root = tmp_path_factory.mktemp("nise-random")
    bucket = root / "bucket"
    bucket.mkdir()
    _nise(
        root / "scratch",
        "report",
        "aws",
        "-s",
        "2026-10-01",
        "-e",
        "2026-10-04",
        "--aws-s3-bucket-name",
        str(bucket),
        "--aws-s3-report-name",
        "cur",
    )
    return bucket


@pytest.fixture(scope="module")
def nise_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nise CUR from a static report file: nise's packaged generator config, one generator per kind."""
    root = tmp_path_factory.mktemp("nise-static")
    bucket = root / "bucket"
    bucket.mkdir()
    template = Path(nise.__file__).parent / "yaml_generators/static/aws_generator_config.yml"
    config = root / "generator.yml"
    config.write_text(re.sub(r"_gens: \d+", "_gens: 1", template.read_text()))
    static = root / "static.yml"
    _nise(root / "scratch", "yaml", "aws", str(config), "-o", str(static), "-s", "2026-10-01", "-e", "2026-10-04")
    _nise(
        root / "scratch",
        "report",
        "aws",
        "-s",
        "2026-10-01",
        "-e",
        "2026-10-04",
        "--static-report-file",
        str(static),
        "--aws-s3-bucket-name",
        str(bucket),
        "--aws-s3-report-name",
        "cur",
    )
    return bucket


@pytest.fixture(params=["nise_random", "nise_static"])
def nise_bucket(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def _copy(bucket: Path, tmp_path: Path) -> Path:
    """A private copy of a bucket (named ``bucket``) that a test may damage."""
    target = tmp_path / "bucket"
    shutil.copytree(bucket, target)
    return target


def _report_files(bucket: Path) -> list[Path]:
    """The CSV files listed by the October manifest."""
    manifest = LocalCurReports(bucket).find_manifest(OCTOBER)
    assert manifest is not None
    return [f.local_path for f in manifest.files if f.local_path]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with gzip.open(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _edit_report(bucket: Path, edit: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]) -> None:
    for path in _report_files(bucket):
        _write_csv(path, *edit(*_read_csv(path)))


@dataclass
class RawTotals:
    """Independent figures from the CSV text: csv module + decimal.Decimal."""

    lines: int
    in_month: int
    unblended: Decimal
    blended: Decimal


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)


def raw_totals(bucket: Path, month: date = OCTOBER) -> RawTotals:
    lines = in_month = 0
    unblended = blended = Decimal(0)
    prefix = f"{month:%Y-%m}"
    for path in _report_files(bucket):
        header, rows = _read_csv(path)
        start, ub, bl = (
            header.index(c) for c in ("lineItem/UsageStartDate", "lineItem/UnblendedCost", "lineItem/BlendedCost")
        )
        for row in rows:
            lines += 1
            if row[start].startswith(prefix):
                in_month += 1
                unblended += _decimal(row[ub])
                blended += _decimal(row[bl])
    return RawTotals(lines, in_month, unblended, blended)


def ingest(source: LocalCurReports | S3ReportSource, out: Path, month: date = OCTOBER) -> aws.MonthTotals:
    """Every step, as the Dagster assets chain them."""
    manifest = source.find_manifest(month)
    assert manifest is not None
    aws.AWS.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=out)
    where = {"schema": SCHEMA, "provider_uuid": UUID, "month": month, "out_root": out}
    aws.AWS.build_daily(work_dir=out / "work", **where)
    aws.AWS.build_summary(work_dir=out / "work", **where)
    return aws.AWS.month_totals(**where)


def _partition_files(out: Path) -> list[str]:
    dirs = [
        line_items_dir(out, SCHEMA, "AWS", UUID, OCTOBER),
        daily_dir(out, SCHEMA, "AWS", UUID, OCTOBER),
        summary_dir(out, aws.SUMMARY_TABLE, UUID, OCTOBER),
    ]
    return sorted(str(p.relative_to(out)) for d in dirs for p in d.parent.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------ manifests


def test_manifest_discovery(nise_random: Path) -> None:
    manifest = LocalCurReports(nise_random).find_manifest(OCTOBER)
    assert manifest is not None
    assert manifest.billing_period_start == OCTOBER
    assert manifest.report_name == "cur"
    assert manifest.manifest_key == "cur/20261001-20261101/cur-Manifest.json"
    assert re.fullmatch(r"[0-9a-f-]{36}", manifest.assembly_id)
    assert manifest.export_datetime.tzinfo is not None
    assert [f.name for f in manifest.files] == ["October-2026-cur.csv.gz"]
    (file,) = manifest.files
    assert file.key.startswith("/cur/20261001-20261101/")  # nise's keys are bucket-relative with a leading /
    assert file.local_path is not None and file.local_path.is_file()
    assert LocalCurReports(nise_random).find_manifest(date(2026, 9, 1)) is None


def test_keys_with_bucket_name_prefix(nise_random: Path, tmp_path: Path) -> None:
    bucket = _copy(nise_random, tmp_path)
    manifest_path = bucket / "cur/20261001-20261101/cur-Manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["reportKeys"] = [f"bucket{k}" for k in doc["reportKeys"]]  # "bucket/cur/..." as some exports list them
    manifest_path.write_text(json.dumps(doc))
    source = LocalCurReports(bucket)
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None and manifest.files[0].local_path is not None
    assert source.etag(manifest.files[0].key) == source.etag(manifest.files[0].key)


def test_manifest_naming_a_missing_file(nise_random: Path, tmp_path: Path) -> None:
    bucket = _copy(nise_random, tmp_path)
    (path,) = _report_files(bucket)
    path.unlink()
    with pytest.raises(ReportFileMissingError, match="October-2026-cur.csv.gz") as err:
        LocalCurReports(bucket).find_manifest(OCTOBER)
    assert str(tmp_path) not in str(err.value)


@pytest.mark.parametrize("key", ["/cur/../../../etc/passwd", "cur/20261001-20261101/./x.csv.gz", "..\\x.csv"])
def test_unsafe_manifest_keys(nise_random: Path, tmp_path: Path, key: str) -> None:
    bucket = _copy(nise_random, tmp_path)
    manifest_path = bucket / "cur/20261001-20261101/cur-Manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["reportKeys"].append(key)
    manifest_path.write_text(json.dumps(doc))
    with pytest.raises(UnsafeReportPathError):
        LocalCurReports(bucket).find_manifest(OCTOBER)


def test_two_reports_for_one_month_need_a_name(nise_random: Path, tmp_path: Path) -> None:
    bucket = _copy(nise_random, tmp_path)
    shutil.copytree(bucket / "cur", bucket / "other")
    month_dir = bucket / "other/20261001-20261101"
    (month_dir / "cur-Manifest.json").rename(month_dir / "other-Manifest.json")
    with pytest.raises(ManifestError, match="cur, other"):
        LocalCurReports(bucket).find_manifest(OCTOBER)
    manifest = LocalCurReports(bucket, report_name="cur").find_manifest(OCTOBER)
    assert manifest is not None and manifest.report_name == "cur"


def test_symlink_leading_out_of_the_bucket(nise_random: Path, tmp_path: Path) -> None:
    bucket = _copy(nise_random, tmp_path)
    outside = tmp_path / "outside.csv.gz"
    (path,) = _report_files(bucket)
    path.rename(outside)
    path.symlink_to(outside)
    with pytest.raises(UnsafeReportPathError):
        LocalCurReports(bucket).find_manifest(OCTOBER)


# ----------------------------------------------------------------------------------- conversion


def test_pipeline_matches_the_raw_report(nise_bucket: Path, tmp_path: Path) -> None:
    raw = raw_totals(nise_bucket)
    totals = ingest(LocalCurReports(nise_bucket), tmp_path / "out")
    assert totals.source_rows == raw.lines
    assert totals.line_item_rows == raw.in_month == raw.lines
    assert totals.rows_outside_month == totals.rows_without_usage_start == 0
    assert abs(totals.summary_unblended_cost - raw.unblended) < Decimal("0.005")
    assert abs(totals.summary_blended_cost - raw.blended) < Decimal("0.005")
    assert totals.raw_unblended_cost == raw.unblended  # same exact text sum, taken during conversion
    assert totals.costs_match
    assert 0 < totals.summary_rows <= totals.daily_rows <= totals.line_item_rows
    for path in line_items_dir(tmp_path / "out", SCHEMA, "AWS", UUID, OCTOBER).iterdir():
        assert pq.read_schema(path).remove_metadata() == LINE_ITEM_SCHEMA  # one fixed schema for every file

    summary = pq.read_table(summary_dir(tmp_path / "out", aws.SUMMARY_TABLE, UUID, OCTOBER)).to_pylist()
    assert {r["source_uuid"] for r in summary} == {UUID}
    assert {str(r["usage_start"]) for r in summary} <= {"2026-10-01", "2026-10-02", "2026-10-03"}
    for row in summary:
        assert isinstance(json.loads(row["tags"]), dict)
        assert row["resource_count"] >= 0


def test_tags_and_cost_categories_folded_into_json(nise_random: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ingest(LocalCurReports(nise_random), out)
    items = pq.read_table(line_items_dir(out, SCHEMA, "AWS", UUID, OCTOBER))
    assert not [c for c in items.column_names if "/" in c or c.startswith(("resourcetags_", "costcategory_"))]
    header, rows = _read_csv(_report_files(nise_random)[0])
    expected = []
    for row in rows:
        tags = {
            h[len("resourceTags/user:") :]: v
            for h, v in zip(header, row, strict=True)
            if h.startswith("resourceTags/user:") and v
        }
        categories = {
            h[len("costCategory/") :]: v
            for h, v in zip(header, row, strict=True)
            if h.startswith("costCategory/") and v
        }
        expected.append((row[header.index("identity/LineItemId")], tags, categories))
    got = {(r["identity_lineitemid"], r["resourcetags"], r["costcategory"]) for r in items.to_pylist()}
    assert {(i, json.dumps(t, sort_keys=True), json.dumps(c, sort_keys=True)) for i, t, c in expected} == {
        (i, json.dumps(json.loads(t), sort_keys=True), json.dumps(json.loads(c), sort_keys=True)) for i, t, c in got
    }
    assert any(t == "{}" for _, t, _ in got) and any(t != "{}" for _, t, _ in got)


def _snake(header: str) -> str:
    """``lineItem/UsageAmount`` -> ``line_item_usage_amount`` (CUR 2.0 / Athena style)."""
    category, _, name = header.partition("/")
    if category == "resourceTags":
        return "resource_tags_" + name.replace(":", "_")
    if category == "costCategory":
        return "cost_category_" + name
    return "_".join(re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower() for part in (category, name))


def _rows(table: pa.Table) -> list[str]:
    """A table's rows as sorted JSON texts, floats to 9 decimals (DuckDB's parallel sums vary in the last bits)."""
    return sorted(
        json.dumps({k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()}, sort_keys=True, default=str)
        for r in table.to_pylist()
    )


def test_snake_case_headers_give_identical_parquet(nise_random: Path, tmp_path: Path) -> None:
    snake = _copy(nise_random, tmp_path)
    _edit_report(snake, lambda header, rows: ([_snake(h) for h in header], rows))
    assert "line_item_usage_amount" in _read_csv(_report_files(snake)[0])[0]
    ingest(LocalCurReports(nise_random), tmp_path / "legacy")
    ingest(LocalCurReports(snake), tmp_path / "snake")
    legacy = pq.read_table(line_items_dir(tmp_path / "legacy", SCHEMA, "AWS", UUID, OCTOBER))
    other = pq.read_table(line_items_dir(tmp_path / "snake", SCHEMA, "AWS", UUID, OCTOBER))
    assert legacy.schema == other.schema
    assert legacy.sort_by("identity_lineitemid").equals(other.sort_by("identity_lineitemid"))
    for directory in (
        lambda out: daily_dir(out, SCHEMA, "AWS", UUID, OCTOBER),
        lambda out: summary_dir(out, aws.SUMMARY_TABLE, UUID, OCTOBER),
    ):
        legacy_rows = _rows(pq.read_table(directory(tmp_path / "legacy")))
        assert legacy_rows == _rows(pq.read_table(directory(tmp_path / "snake")))


def _same(a: aws.MonthTotals, b: aws.MonthTotals) -> bool:
    """Equal counts and exact sums; DuckDB's parallel double sums may differ in the last bits."""
    for name, value in a.__dict__.items():
        other = getattr(b, name)
        if isinstance(value, Decimal) and abs(value - other) > Decimal("1e-6"):
            return False
        if not isinstance(value, Decimal) and value != other:
            return False
    return True


def test_rerun_replaces_partitions(nise_static: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = ingest(LocalCurReports(nise_static), out)
    files = _partition_files(out)
    second = ingest(LocalCurReports(nise_static), out)
    assert _partition_files(out) == files
    assert not [p for p in out.rglob(".*") if p.name.startswith((".staging-", ".retired-"))]
    assert _same(second, first)
    assert second.line_item_rows == first.source_rows  # no duplicates


def test_missing_required_columns(nise_static: Path, tmp_path: Path) -> None:
    for column in ("lineItem/UsageStartDate", "lineItem/UnblendedCost"):
        bucket = _copy(nise_static, tmp_path / column.replace("/", "_"))

        def drop(header: list[str], rows: list[list[str]], column: str = column) -> tuple[list[str], list[list[str]]]:
            i = header.index(column)
            return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]

        _edit_report(bucket, drop)
        source = LocalCurReports(bucket)
        manifest = source.find_manifest(OCTOBER)
        assert manifest is not None
        with pytest.raises(ReportFormatError, match=normalize_legacy(column)):
            aws.AWS.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=tmp_path / "out")


def test_truncated_gzip_keeps_the_previous_partition(nise_random: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bucket = _copy(nise_random, tmp_path)
    ingest(LocalCurReports(bucket), out)
    before = _partition_files(out)
    (path,) = _report_files(bucket)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    source = LocalCurReports(bucket)
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None
    with pytest.raises(CorruptReportError, match="October-2026-cur.csv.gz"):
        aws.AWS.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=out)
    assert _partition_files(out) == before


def test_rows_of_the_wrong_width(nise_static: Path, tmp_path: Path) -> None:
    bucket = _copy(nise_static, tmp_path)
    _edit_report(bucket, lambda header, rows: (header, [*rows, ["2026-10-01", "1.0"]]))
    source = LocalCurReports(bucket)
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None
    with pytest.raises(CorruptReportError, match="unreadable"):
        aws.AWS.convert_manifest(source, manifest, schema=SCHEMA, provider_uuid=UUID, out_root=tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.parquet"))


def test_non_numeric_costs_fail_the_file(nise_static: Path, tmp_path: Path) -> None:
    """A cost that cannot be read would make the month's total wrong: the file fails, naming it."""
    bucket = _copy(nise_static, tmp_path)

    def damage(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        rows[3][header.index("lineItem/UnblendedCost")] = "12,5"
        return header, rows

    _edit_report(bucket, damage)
    with pytest.raises(ReportFormatError, match=r"non-numeric lineitem_unblendedcost value '12,5'"):
        ingest(LocalCurReports(bucket), tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_non_numeric_usage_and_rows_outside_the_month(nise_static: Path, tmp_path: Path) -> None:
    """Unparseable non-cost amounts and dates become NULL and are counted (not fatal); rows of other
    months are dropped and counted; the raw cost of the month's rows still equals the summary's."""
    bucket = _copy(nise_static, tmp_path)

    def damage(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        usage, start = header.index("lineItem/UsageAmount"), header.index("lineItem/UsageStartDate")
        rows[0][usage] = "n/a"
        rows[1][usage] = "12,5"
        rows[2][start] = "not a date"
        extra = [list(r) for r in rows[:5]]
        for r in extra:
            r[start] = "2026-09-30T23:00:00Z"
        return header, rows + extra

    _edit_report(bucket, damage)
    raw = raw_totals(bucket)
    totals = ingest(LocalCurReports(bucket), tmp_path / "out")
    assert totals.source_rows == raw.lines
    assert totals.rows_outside_month == 5
    assert totals.rows_without_usage_start == 1
    assert totals.line_item_rows == raw.in_month == raw.lines - 6
    assert totals.uncast_cells >= 3
    assert abs(totals.summary_unblended_cost - raw.unblended) < Decimal("0.005")
    assert totals.costs_match


# ------------------------------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from koku_devtools.services import MotoServer

    with MotoServer(workdir=tmp_path_factory.mktemp("moto")) as server:
        yield server


def test_s3_source_with_role_assumption(
    moto: object, nise_random: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same report on S3 (below a prefix, keys as a real CUR lists them), read with an assumed role."""
    for name, value in moto.aws_env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    admin = moto.client("s3")  # type: ignore[attr-defined]
    admin.create_bucket(Bucket="cur-bucket")
    for path in nise_random.rglob("*"):
        key = f"reports/{path.relative_to(nise_random).as_posix()}"
        if path.name.endswith("-Manifest.json"):
            doc = json.loads(path.read_text())
            doc["reportKeys"] = [f"reports{k}" for k in doc["reportKeys"]]
            admin.put_object(Bucket="cur-bucket", Key=key, Body=json.dumps(doc).encode())
        elif path.is_file():
            admin.upload_file(str(path), "cur-bucket", key)
    credentials = assume_role_credentials(
        "arn:aws:iam::123456789012:role/cost", "ext-id", region="us-east-1", endpoint_url=moto.endpoint_url
    )  # type: ignore[attr-defined]
    assert credentials["aws_session_token"]
    client = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto.endpoint_url,
        **credentials,  # type: ignore[attr-defined]
    )
    source = S3ReportSource(client, "cur-bucket", prefix="reports")
    manifest = source.find_manifest(OCTOBER)
    assert manifest is not None and manifest.report_name == "cur"
    assert manifest.manifest_key == "reports/cur/20261001-20261101/cur-Manifest.json"
    assert source.find_manifest(date(2026, 9, 1)) is None
    assert S3ReportSource(client, "cur-bucket", prefix="reports", report_name="cur").find_manifest(OCTOBER) == manifest
    assert source.etag(manifest.files[0].key)
    with pytest.raises(ReportFileMissingError):
        source.etag("reports/cur/nope.csv.gz")
    with pytest.raises(ReportFileMissingError):
        source.open_file("reports/cur/nope.csv.gz")
    assert _same(ingest(source, tmp_path / "s3"), ingest(LocalCurReports(nise_random), tmp_path / "local"))


def test_rows_outside_month_are_counted(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from koku_dagster.reports.month_tables import rows_outside_month

    path = tmp_path / "s.parquet"
    pq.write_table(
        pa.table({"usage_start": [date(2026, 9, 30), date(2026, 10, 1), date(2026, 10, 31), date(2026, 11, 1)]}), path
    )
    assert rows_outside_month([path], "usage_start", date(2026, 10, 1)) == 2
    assert rows_outside_month([], "usage_start", date(2026, 10, 1)) == 0
