"""Tools the harness installs by itself, once per machine, under ``$XDG_CACHE_HOME/koku-dagster``.

Each tool lives in its own folder, built under an exclusive file lock (parallel test sessions wait
for each other) and marked with a stamp naming what was installed; a changed stamp rebuilds it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from koku_devtools.services.processes import ServiceError

_STAMP = ".koku-installed"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/koku-dagster`` (default ``~/.cache/koku-dagster``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "koku-dagster"


def cached_install(name: str, stamp: str, build: Callable[[Path], None]) -> Path:
    """The folder ``cache_root()/name``, built by ``build(folder)`` unless it already holds ``stamp``.

    A failed build leaves no stamp, so the next call starts over from an empty folder.
    """
    folder = cache_root() / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = folder / _STAMP
        if marker.is_file() and marker.read_text() == stamp:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        build(folder)
        marker.write_text(stamp)
    return folder


def run_step(command: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None, timeout: float = 900) -> None:
    """Run one install step; raise :class:`ServiceError` with its output when it fails."""
    done = subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise ServiceError(f"{' '.join(command)} failed ({done.returncode}):\n{output}")
