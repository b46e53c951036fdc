"""Small nise-generated cost reports in the local bucket layouts the ``*-local`` sources read."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

OCP_CLUSTER_ID = "demo-cluster"


def _nise() -> str:
    candidate = Path(sys.executable).with_name("nise")
    return str(candidate) if candidate.exists() else "nise"


def run_nise(args: list[str]) -> None:
    """Run nise from a scratch directory (it writes temporary files into the working directory)."""
    with tempfile.TemporaryDirectory(prefix="nise-") as scratch:
        done = subprocess.run([_nise(), "report", *args], cwd=scratch, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nise {' '.join(args[:1])} failed: {done.stderr[-2000:]}")


def generate(
    root: Path, start: date, end: date, kinds: tuple[str, ...] = ("aws", "azure", "gcp", "ocp")
) -> dict[str, Path]:
    """Write reports for ``kinds`` under ``root/<kind>`` (replacing what was there); return the directories."""
    dirs: dict[str, Path] = {}
    span = ["-s", start.isoformat(), "-e", end.isoformat()]
    for kind in kinds:
        target = root / kind
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if kind == "aws":
            run_nise(["aws", *span, "--aws-s3-bucket-name", str(target), "--aws-s3-report-name", "cur"])
        elif kind == "azure":
            run_nise(["azure", *span, "--azure-container-name", str(target), "--azure-report-name", "cost"])
        elif kind == "gcp":
            run_nise(["gcp", *span, "--gcp-bucket-name", str(target)])
        elif kind == "ocp":
            run_nise(["ocp", *span, "--ocp-cluster-id", OCP_CLUSTER_ID, "--insights-upload", str(target)])
        else:
            raise ValueError(f"unknown report kind {kind!r}")
        dirs[kind] = target
    return dirs
