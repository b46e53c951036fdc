"""A job for the fault suite: stands in for a payload run that is busy when it is killed.

Its op holds the OpenShift line-items lock exclusively (as ``process_ocp_payload`` does), leaves a
``.staging-*`` folder as a replacement in progress would, and sleeps until killed.
"""

import os
import time
from pathlib import Path

import dagster as dg

from koku_dagster.ingest.ocp_lock import ocp_line_items_lock


@dg.op
def busy_payload() -> None:
    home = Path(os.environ["FAULT_HOME"])
    with ocp_line_items_lock(home, exclusive=True, timeout=5):
        (home / "store/data/x/.staging-month=11-dead").mkdir(parents=True, exist_ok=True)
        (home / "locked").touch()
        time.sleep(120)


@dg.job(tags={"koku/kind": "ocp-payload"}, executor_def=dg.in_process_executor)
def busy_payload_job() -> None:
    busy_payload()
