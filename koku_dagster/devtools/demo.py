"""``make demo``: a Kafka broker, a stand-in Platform Sources, demo reports and ``dagster dev``.

Everything runs on embedded defaults under ``KOKU_HOME`` (``./.koku``). The application
database and the stored data start empty on each run (the broker and the stand-in keep no
state across runs); the Dagster run history under ``.koku/dagster`` is kept. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from types import FrameType

import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.schema import provider
from koku_dagster.devtools.demo_data import OCP_CLUSTER_ID, generate
from koku_dagster.devtools.platform_sources.admin import StandInAdmin
from koku_dagster.devtools.platform_sources.server import StandInServer
from koku_dagster.devtools.services import TansuBroker, create_topics
from koku_dagster.devtools.uploads import announce_payloads
from koku_dagster.infra.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
UI_URL = "http://127.0.0.1:3000"


def _port_of(url_or_bootstrap: str) -> int:
    return int(url_or_bootstrap.rsplit(":", 1)[1].split("/")[0])


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _wait_for_ocp_provider(database_url: str, stop: threading.Event, timeout: float = 180.0) -> bool:
    """Wait until the sources sensor has created the OpenShift provider (payloads name its cluster)."""
    engine = get_engine(database_url)
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with engine.connect() as conn:
                if conn.execute(sa.select(provider.c.uuid).where(provider.c.type == "OCP")).first():
                    return True
        except sa.exc.OperationalError:
            pass  # the code location has not created the tables yet
        stop.wait(2.0)
    _say("the OpenShift provider did not appear; no payload announced")
    return False


def main() -> int:
    settings = get_settings()
    home = settings.home
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    db_file = home / "koku.db"
    for leftover in (db_file, db_file.with_suffix(".db-wal"), db_file.with_suffix(".db-shm"), home / "warehouse.duckdb"):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(home / "data", ignore_errors=True)  # files of the previous run's providers

    buckets = settings.local_bucket_roots[0]
    today = date.today()
    start = today.replace(day=1)
    end = start + timedelta(days=2)
    _say(f"generating nise reports ({start} to {end}) under {buckets} ...")
    dirs = generate(buckets, start, end)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    broker = TansuBroker(port=_port_of(settings.kafka_bootstrap_servers), workdir=home / "tansu").start()
    _say(f"Kafka (Tansu) on {broker.bootstrap}")
    create_topics(broker.bootstrap, [settings.sources_topic, settings.upload_topic, settings.validation_topic])
    standin = StandInServer(
        port=_port_of(settings.sources_api_url),
        psk=settings.sources_psk,
        kafka_bootstrap=broker.bootstrap,
        topic=settings.sources_topic,
    ).start()
    _say(f"Platform Sources stand-in on {standin.url}")

    env = dict(os.environ, KOKU_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    dagster = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", "3000"],
        cwd=dagster_home,  # its dagster.yaml is the repository's copy
        env=env,
        start_new_session=True,
    )
    try:
        admin = StandInAdmin(standin.url, psk=settings.sources_psk)
        admin.create_cost_source("aws-local", "Demo AWS", bucket=str(dirs["aws"]))
        admin.create_cost_source(
            "azure-local", "Demo Azure", storage_account=str(dirs["azure"]), resource_group="demo-rg"
        )
        admin.create_cost_source("gcp-local", "Demo GCP", bucket=str(dirs["gcp"]), dataset="demo_dataset")
        admin.create_cost_source("ocp", "Demo OpenShift", cluster_id=OCP_CLUSTER_ID)
        _say("created 4 sources (AWS, Azure, GCP, OpenShift); their events are on Kafka")
        if _wait_for_ocp_provider(settings.database_url, stop):
            shutil.rmtree(buckets / "payloads", ignore_errors=True)
            bodies = announce_payloads(
                dirs["ocp"], buckets / "payloads", bootstrap=broker.bootstrap, topic=settings.upload_topic
            )
            _say(f"announced {len(bodies)} OpenShift payload(s) on {settings.upload_topic} (ocp_upload_sensor)")
        _say(f"Dagster UI: {UI_URL}  (Automation -> platform_sources_sensor; Assets -> sources group)")
        _say("Ctrl-C stops everything")
        while not stop.wait(1.0):
            if dagster.poll() is not None:
                _say(f"dagster dev exited with {dagster.returncode}")
                break
    finally:
        if dagster.poll() is None:
            os.killpg(dagster.pid, signal.SIGTERM)
            try:
                dagster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dagster.pid, signal.SIGKILL)
                dagster.wait()
        standin.stop()
        broker.stop()
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
