"""OpenShift payload tarballs as the Cost Management Metrics Operator uploads them, for tests and the demo."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from koku_dagster.providers.ocp_payload import MANIFEST_NAME, parse_manifest


def build_payload(report_dir: Path, out: Path) -> Path:
    """A payload tar.gz from a nise ``--insights-upload`` report folder (``manifest.json`` + CSVs).

    The manifest and the files it lists are stored at the top level, as the operator uploads them.
    """
    manifest = parse_manifest(json.loads((report_dir / MANIFEST_NAME).read_text(encoding="utf-8")))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, mode="w:gz") as tar:
        for name in (MANIFEST_NAME, *manifest.files):
            tar.add(report_dir / name, arcname=name, recursive=False)
    return out


def payload_folders(upload_root: Path) -> list[Path]:
    """Every report folder (holding ``manifest.json``) of a nise ``--insights-upload`` output."""
    return sorted(p.parent for p in upload_root.rglob(MANIFEST_NAME))
