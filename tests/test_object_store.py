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


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_mirrors_of_two_machines_never_serve_or_republish_a_stale_partition(
    seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two machines, each with its own mirror of one bucket: a step fetches what it reads even when its
    mirror has a copy, and publishing a partition never touches another."""
    for key, value in seaweed.aws_env().items():
        monkeypatch.setenv(key, value)
    url = f"s3://koku/{tmp_path.name}"
    one = ObjectStore(url, seaweed.endpoint_url, tmp_path / "machine-1")
    two = ObjectStore(url, seaweed.endpoint_url, tmp_path / "machine-2")
    relative = f"data/parquet/org1/AWS/source={U1}/year=2026/month=10"
    written = one.local_root / relative
    written.mkdir(parents=True)
    (written / "a.parquet").write_text("a1")
    (written / "b.parquet").write_text("b1")
    assert one.publish(written) == 2
    mirror = two.local_root / relative
    assert two.fetch(mirror) == 2 and _files(mirror) == {"a.parquet": "a1", "b.parquet": "b1"}
    kept = (mirror / "a.parquet").stat().st_ino
    # Machine 1 rewrites the month: b changes, a stays, c is new, and an old file goes.
    (written / "b.parquet").write_text("b2")
    (written / "c.parquet").write_text("c2")
    one.publish(written)
    (mirror / "local-only.parquet").write_text("not in the store")  # e.g. left by a step that died
    assert two.fetch(mirror) == 2  # b and c; a matched its ETag
    assert _files(mirror) == {"a.parquet": "a1", "b.parquet": "b2", "c.parquet": "c2"}
    assert (mirror / "a.parquet").stat().st_ino == kept
    assert two.fetch(mirror) == 0  # nothing changed: nothing downloaded
    assert not [p for p in mirror.parent.iterdir() if p.name.startswith(".staging-")]
    # Machine 2 writes another month: machine 1's partition in the store is untouched.
    other = two.local_root / relative.replace("month=10", "month=11")
    other.mkdir(parents=True)
    (other / "x.parquet").write_text("x")
    two.publish(other)
    (written / "a.parquet").unlink()
    one.publish(written)
    assert two.fetch(mirror) == 0 and _files(mirror) == {"b.parquet": "b2", "c.parquet": "c2"}
    assert one.fetch(one.local_root / relative.replace("month=10", "month=11")) == 1


def test_a_partition_gone_from_the_store_goes_from_the_mirror(
    seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention or a deletion on another machine: the stale mirror copy is not read (nor republished)."""
    for key, value in seaweed.aws_env().items():
        monkeypatch.setenv(key, value)
    store = ObjectStore(f"s3://koku/{tmp_path.name}", seaweed.endpoint_url, tmp_path / "mirror")
    partition = store.local_root / f"data/summary/t/source={U1}/year=2026/month=06"
    partition.mkdir(parents=True)
    (partition / "p.parquet").write_text("old")
    assert store.fetch(partition) == 0
    assert not list(partition.rglob("*.parquet"))
