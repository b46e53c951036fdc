"""Provider data deletion and retention on a local directory and on real S3 (SeaweedFS)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from koku_dagster.infra.object_store import ObjectStore
from koku_devtools.services import SeaweedS3

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
LAYOUT = [
    f"data/csv/org1/AWS/source={U1}/year=2026/month=06/a.csv",
    f"data/csv/org1/AWS/source={U1}/year=2026/month=10/a.csv",
    f"data/parquet/org1/AWS/source={U1}/year=2026/month=06/a.parquet",
    f"data/parquet/daily/org1/AWS/raw/source={U1}/year=2026/month=10/a.parquet",
    f"data/summary/reporting_awscostentrylineitem_daily_summary/source={U1}/year=2026/month=06/p.parquet",
    f"data/parquet/org1/AWS/source={U2}/year=2026/month=06/a.parquet",
]


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(workdir=tmp_path_factory.mktemp("seaweed"), buckets=("koku",)) as server:
        yield server


def _local(tmp_path: Path) -> tuple[ObjectStore, callable]:
    for key in LAYOUT:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text("x")
    store = ObjectStore(f"file://{tmp_path}")
    return store, lambda: sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


def _s3(seaweed: SeaweedS3, prefix: str) -> tuple[ObjectStore, callable]:
    client = seaweed.client("s3")
    for key in LAYOUT:
        client.put_object(Bucket="koku", Key=f"{prefix}/{key}", Body=b"x")
    store = ObjectStore(f"s3://koku/{prefix}", endpoint_url=seaweed.endpoint_url)

    def listing() -> list[str]:
        found = client.list_objects_v2(Bucket="koku", Prefix=f"{prefix}/").get("Contents", [])
        return sorted(o["Key"].removeprefix(f"{prefix}/") for o in found)

    return store, listing


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_retention_then_provider_deletion(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "local":
        store, listing = _local(tmp_path)
    else:
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        for key, value in seaweed.aws_env().items():
            monkeypatch.setenv(key, value)
        store, listing = _s3(seaweed, tmp_path.name)
    assert store.delete_months_before(U1, date(2026, 8, 1)) == 3
    assert listing() == sorted([LAYOUT[1], LAYOUT[3], LAYOUT[5]])
    assert store.delete_provider_data(U1) >= 2
    assert listing() == [LAYOUT[5]]  # the other provider is untouched
