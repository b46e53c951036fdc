"""Crash leftovers: the scratch folders a dead run leaves behind, found and removed (no Dagster).

A run that dies (OOM killer, ``kill -9``, a lost machine) skips its clean-up, so these survive it:

* ``.staging-*`` and ``.retired-*`` siblings of a partition (:func:`koku_dagster.reports.paths.replacing`),
  anywhere under ``data/`` of the object store's local root;
* ``.ocp-incoming-*`` (OpenShift conversion) directly under the local root;
* ``ocp-payload-*`` (a payload's download and extracted CSVs) directly under the work folder;
* ``.warehouse-*`` (a catalog being rebuilt) beside ``warehouse.duckdb``.

A leftover is removed when its newest file is older than ``max_age`` (longer than any run may live)
and older than the start of every run still in progress; one under ``source={uuid}`` of a provider
that no longer exists is removed at any age, unless a run of that provider is in progress.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

#: Leftovers found directly in one of the places searched.
TOP_LEVEL_PREFIXES = (".ocp-incoming-", "ocp-payload-", ".warehouse-")
#: Leftovers found anywhere below ``data/`` (beside the partition they were to replace).
PARTITION_PREFIXES = (".staging-", ".retired-")
_SOURCE = re.compile(r"source=([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


@dataclass(frozen=True)
class RunsInProgress:
    """What the runs in progress may own: their earliest start, and the providers they work on."""

    earliest_start: datetime | None = None
    providers: frozenset[str] = frozenset()


@dataclass
class SweepReport:
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    kept_young: int = 0
    kept_busy: int = 0
    failed: int = 0


def find_leftovers(places: Iterable[Path]) -> Iterator[Path]:
    """The leftovers in ``places`` (each searched at its top level and, below ``data/``, in depth)."""
    seen: set[Path] = set()
    for place in places:
        for found in _top_level(place) + list(_below_data(place / "data")):
            if found not in seen:
                seen.add(found)
                yield found


def _top_level(place: Path) -> list[Path]:
    if not place.is_dir():
        return []
    return [p for p in place.iterdir() if p.name.startswith(TOP_LEVEL_PREFIXES)]


def _below_data(data: Path) -> Iterator[Path]:
    for folder, dirs, _files in os.walk(data):
        leftovers = [d for d in dirs if d.startswith(PARTITION_PREFIXES)]
        dirs[:] = [d for d in dirs if d not in leftovers]  # never descend into a leftover
        yield from (Path(folder) / d for d in leftovers)


def _newest(path: Path) -> tuple[datetime, int]:
    """The newest modification time of ``path`` and everything below it, and its size in bytes."""
    stat = path.lstat()
    newest, size = stat.st_mtime, stat.st_size
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    st = (Path(folder) / name).lstat()
                except FileNotFoundError:
                    continue
                newest, size = max(newest, st.st_mtime), size + st.st_size
    return datetime.fromtimestamp(newest, UTC), size


def provider_of(path: Path) -> str | None:
    """The provider uuid of a leftover below a ``source={uuid}`` folder (or named after one)."""
    found = _SOURCE.findall(path.as_posix())
    return found[-1] if found else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def sweep_leftovers(
    places: Iterable[Path],
    *,
    now: datetime,
    max_age: timedelta,
    in_progress: RunsInProgress = RunsInProgress(),
    existing_providers: Callable[[set[str]], set[str]] | None = None,
) -> SweepReport:
    """Remove the leftovers in ``places`` that no run can own any more (module docstring).

    ``existing_providers`` answers which of the given provider uuids still exist; without it no
    leftover is removed for belonging to a deleted provider.
    """
    found = [(path, provider_of(path)) for path in find_leftovers(places)]
    uuids = {uuid for _, uuid in found if uuid}
    alive = existing_providers(uuids) if existing_providers and uuids else uuids
    report = SweepReport()
    for path, uuid in found:
        try:
            newest, size = _newest(path)
        except FileNotFoundError:
            continue  # its run finished meanwhile
        if uuid in in_progress.providers:
            report.kept_busy += 1
            continue
        orphan = uuid is not None and uuid not in alive
        if not orphan and newest > now - max_age:
            report.kept_young += 1
            continue
        if not orphan and in_progress.earliest_start is not None and newest >= in_progress.earliest_start:
            report.kept_busy += 1
            continue
        try:
            _remove(path)
        except OSError as exc:
            log.warning("could not remove the leftover %s: %s", path, type(exc).__name__)
            report.failed += 1
            continue
        log.info("removed the leftover %s (%s)", path, "deleted provider" if orphan else f"last written {newest}")
        report.removed.append(path)
        report.bytes_freed += size
    return report
