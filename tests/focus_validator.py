"""The FinOps Foundation's ``focus-validator`` in a side virtual environment, made once per machine.

Its releases pin old numpy and pandas, so it cannot share the project's environment. The environment
lives under ``$XDG_CACHE_HOME/koku-dagster/focus-validator-venv`` (default ``~/.cache``) and is rebuilt
when :data:`REQUIREMENTS` change. 1.0.0 (the newest release) needs three extra pins to import at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = (
    "focus-validator==1.0.0",
    "multimethod<1.11",  # pandera 0.17 imports multimethod.overload, gone in 1.11
    "numpy<2",  # the release's pin, stated so that pyarrow below matches it
    "pyarrow<18",  # newer pyarrow needs numpy 2; pandas then cannot read Parquet
)
PYTHON = "python3.11"

#: Runs inside the side environment: argv = FOCUS version (newest known when empty), data files.
_RUNNER = """
import json, os, sys
import pandas as pd
import focus_validator
from focus_validator.rules.spec_rules import SpecRules
from focus_validator.validator import DEFAULT_VERSION_SETS_PATH

def order(version):
    number, _, tag = version.partition("-")
    return tuple(int(p) for p in number.split(".")), tag == ""

version, paths = sys.argv[1], sys.argv[2:]
# The release reads its currency code list from a path relative to the working directory
# (focus_validator/utils/currency_codes.csv): run from its site-packages folder.
os.chdir(os.path.dirname(os.path.dirname(focus_validator.__file__)))
probe = SpecRules(None, DEFAULT_VERSION_SETS_PATH, "1.0", None)
version = version or max(probe.supported_versions(), key=order)
reports = []
for path in paths:
    rules = SpecRules(None, DEFAULT_VERSION_SETS_PATH, version, None)
    rules.load()
    result = rules.validate(pd.read_parquet(path))
    reports.append({k: v.status.value for k, v in result.checklist.items()})
print(json.dumps({"version": version, "reports": reports}))
"""


@dataclass(frozen=True)
class ValidatorReport:
    """The validator's verdict on one file: the spec version used and each rule's status."""

    version: str
    statuses: dict[str, str]

    def with_status(self, status: str) -> set[str]:
        return {rule for rule, s in self.statuses.items() if s == status}


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "koku-dagster" / "focus-validator-venv"


def ensure_venv() -> Path:
    """The side environment's python, creating or rebuilding the environment when needed.

    Raises ``RuntimeError`` with pip's output when installation fails.
    """
    venv = venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / ".koku-requirements"
    wanted = "\n".join(REQUIREMENTS)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / "focus-validator-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == wanted and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = [[PYTHON, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, cwd=venv.parent)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(wanted)
    return python


def validate(*data_files: Path, version: str = "") -> list[ValidatorReport]:
    """Run the validator on Parquet files against ``version`` (default: the newest it knows), one process."""
    done = subprocess.run(
        [str(ensure_venv()), "-c", _RUNNER, version, *(str(f.resolve()) for f in data_files)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"focus-validator failed:\n{done.stderr}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return [ValidatorReport(doc["version"], statuses) for statuses in doc["reports"]]
