"""The Dagster instance file for the demo and the tests: the repository's ``dagster.yaml``, plus
``deploy/dagster-postgres.yaml`` for storage on PostgreSQL (the same concatenation an operator makes)."""

from __future__ import annotations

from pathlib import Path

#: The checkout (``devtools/koku_devtools/dagster_instance.py`` -> the repository).
REPO = Path(__file__).resolve().parents[2]
STORAGES = ("sqlite", "postgres")


def instance_yaml(storage: str = "sqlite", extra: str = "") -> str:
    """The instance settings for ``storage``, followed by ``extra`` YAML (top-level keys not in dagster.yaml)."""
    if storage not in STORAGES:
        raise ValueError(f"DAGSTER_STORAGE must be one of {', '.join(STORAGES)}, got {storage!r}")
    parts = [(REPO / "dagster.yaml").read_text()]
    if storage == "postgres":
        parts.append((REPO / "deploy" / "dagster-postgres.yaml").read_text())
    parts.append(extra)
    return "\n".join(part.rstrip("\n") + "\n" for part in parts if part)


def write_instance(dagster_home: Path, storage: str = "sqlite", extra: str = "") -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(instance_yaml(storage, extra))
    return path
