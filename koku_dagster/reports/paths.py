"""Object-store layout (docs/ingestion.md), below a local output root, and whole-partition replacement."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _name(value: str) -> str:
    """A schema, provider type or table name; anything that could step out of the layout is refused."""
    if not _NAME.match(value):
        raise ValueError(f"invalid name in an object-store path: {value!r}")
    return value


def _source(provider_uuid: str) -> str:
    """``source={uuid}``; the uuid must be in its canonical lowercase hyphenated form."""
    if str(uuid.UUID(provider_uuid)) != provider_uuid:
        raise ValueError(f"provider uuid must be lowercase hyphenated: {provider_uuid!r}")
    return f"source={provider_uuid}"


def month_partition(month: date) -> str:
    """``year=YYYY/month=MM``."""
    return f"year={month.year:04d}/month={month.month:02d}"


def csv_dir(out_root: Path, schema: str, provider_type: str, provider_uuid: str, month: date) -> Path:
    """``data/csv/{schema}/{TYPE}/source={uuid}/year=YYYY/month=MM``: the archived raw reports."""
    return (
        out_root / "data/csv" / _name(schema) / _name(provider_type) / _source(provider_uuid) / month_partition(month)
    )


def line_items_dir(out_root: Path, schema: str, provider_type: str, provider_uuid: str, month: date) -> Path:
    """``data/parquet/{schema}/{TYPE}/source={uuid}/year=YYYY/month=MM``."""
    base = out_root / "data/parquet" / _name(schema) / _name(provider_type)
    return base / _source(provider_uuid) / month_partition(month)


def daily_dir(out_root: Path, schema: str, provider_type: str, provider_uuid: str, month: date) -> Path:
    """``data/parquet/daily/{schema}/{TYPE}/raw/source={uuid}/year=YYYY/month=MM``."""
    base = out_root / "data/parquet/daily" / _name(schema) / _name(provider_type) / "raw"
    return base / _source(provider_uuid) / month_partition(month)


def summary_dir(out_root: Path, table: str, provider_uuid: str, month: date) -> Path:
    """``data/summary/{table}/source={uuid}/year=YYYY/month=MM``."""
    return out_root / "data/summary" / _name(table) / _source(provider_uuid) / month_partition(month)


def parquet_files(directory: Path) -> list[Path]:
    """The Parquet files of a partition, sorted; none when it does not exist."""
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


@contextmanager
def replacing(partition: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``partition`` when the block succeeds.

    The staging directory is a hidden sibling (``.staging-month=MM-<random>``), invisible to
    ``month=*`` globs and on the same file system, so the swap is two renames. On error it is removed
    and the previous partition stays as it was.
    """
    partition.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    staging = partition.parent / f".staging-{partition.name}-{token}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = partition.parent / f".retired-{partition.name}-{token}"
    if partition.exists():
        partition.rename(retired)
    staging.rename(partition)
    shutil.rmtree(retired, ignore_errors=True)


def ocp_line_items_dir(out_root: Path, schema: str, report_type: str, provider_uuid: str, month: date) -> Path:
    """``data/parquet/{schema}/OCP/{report_type}/source={uuid}/year=YYYY/month=MM``."""
    base = out_root / "data/parquet" / _name(schema) / "OCP" / _name(report_type)
    return base / _source(provider_uuid) / month_partition(month)


def ocp_daily_dir(out_root: Path, schema: str, report_type: str, provider_uuid: str, month: date) -> Path:
    """``data/parquet/daily/{schema}/OCP/{report_type}/source={uuid}/year=YYYY/month=MM``."""
    base = out_root / "data/parquet/daily" / _name(schema) / "OCP" / _name(report_type)
    return base / _source(provider_uuid) / month_partition(month)
