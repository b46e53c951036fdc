"""``make demo``: a Kafka broker, a stand-in Platform Sources, demo reports and ``dagster dev``.

Everything runs on embedded defaults under ``KOKU_HOME`` (``./.koku``). The application
database and the stored data start empty on each run (the broker and the stand-in keep no
state across runs); the Dagster run history under ``.koku/dagster`` is kept. Ctrl-C or SIGTERM
stops everything.
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
from koku_dagster.infra.db.migrate import migrate
from koku_dagster.infra.db.schema import provider
from koku_dagster.infra.settings import Settings, get_settings
from koku_devtools.nise_reports import OCP_CLUSTER_ID, generate
from koku_devtools.platform_sources.admin import StandInAdmin
from koku_devtools.platform_sources.server import StandInServer
from koku_devtools.services import TansuBroker, create_topics
from koku_devtools.uploads import announce_payloads

#: The checkout (``devtools/koku_devtools/demo.py`` -> the repository), for dagster.yaml and workspace.yaml.
REPO = Path(__file__).resolve().parents[2]
UI_URL = "http://127.0.0.1:3000"


def _port_of(url_or_bootstrap: str) -> int:
    return int(url_or_bootstrap.rsplit(":", 1)[1].split("/")[0])


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _fresh_home(settings: Settings) -> Path:
    """Empty the application database and stored data of the previous run; returns the Dagster home."""
    home = settings.home
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    db_file = home / "koku.db"
    for leftover in (db_file.with_suffix(suffix) for suffix in (".db", ".db-wal", ".db-shm")):
        leftover.unlink(missing_ok=True)
    (home / "warehouse.duckdb").unlink(missing_ok=True)
    shutil.rmtree(home / "data", ignore_errors=True)  # files of the previous run's providers
    migrate(settings.database_url)
    return dagster_home


def _start_dagster(home: Path, dagster_home: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KOKU_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            "3000",
        ],
        cwd=dagster_home,  # its dagster.yaml is the repository's copy
        env=env,
        start_new_session=True,
    )


def _stop_dagster(dagster: subprocess.Popen[bytes]) -> None:
    if dagster.poll() is not None:
        return
    os.killpg(dagster.pid, signal.SIGTERM)
    try:
        dagster.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(dagster.pid, signal.SIGKILL)
        dagster.wait()


def _create_demo_sources(standin: StandInServer, psk: str, report_dirs: dict[str, Path]) -> None:
    admin = StandInAdmin(standin.url, psk=psk)
    admin.create_cost_source("aws-local", "Demo AWS", bucket=str(report_dirs["aws"]))
    admin.create_cost_source(
        "azure-local", "Demo Azure", storage_account=str(report_dirs["azure"]), resource_group="demo-rg"
    )
    admin.create_cost_source("gcp-local", "Demo GCP", bucket=str(report_dirs["gcp"]), dataset="demo_dataset")
    admin.create_cost_source("ocp", "Demo OpenShift", cluster_id=OCP_CLUSTER_ID)
    _say("created 4 sources (AWS, Azure, GCP, OpenShift); their events are on Kafka")


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
            pass  # the database is busy or not there yet
        stop.wait(2.0)
    _say("the OpenShift provider did not appear; no payload announced")
    return False


def _announce_ocp_payloads(settings: Settings, broker: TansuBroker, ocp_reports: Path) -> None:
    payload_dir = settings.local_bucket_roots[0] / "payloads"
    shutil.rmtree(payload_dir, ignore_errors=True)
    bodies = announce_payloads(ocp_reports, payload_dir, bootstrap=broker.bootstrap, topic=settings.upload_topic)
    _say(f"announced {len(bodies)} OpenShift payload(s) on {settings.upload_topic} (ocp_upload_sensor)")


def _stop_event() -> threading.Event:
    """Set on SIGINT or SIGTERM."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return stop


def main() -> int:
    settings = get_settings()
    dagster_home = _fresh_home(settings)
    buckets = settings.local_bucket_roots[0]
    start = date.today().replace(day=1)
    end = start + timedelta(days=2)
    _say(f"generating nise reports ({start} to {end}) under {buckets} ...")
    report_dirs = generate(buckets, start, end)
    stop = _stop_event()

    broker = TansuBroker(port=_port_of(settings.kafka_bootstrap_servers), workdir=settings.home / "tansu").start()
    _say(f"Kafka (Tansu) on {broker.bootstrap}")
    create_topics(broker.bootstrap, [settings.sources_topic, settings.upload_topic, settings.validation_topic])
    standin = StandInServer(
        port=_port_of(settings.sources_api_url),
        psk=settings.sources_psk,
        kafka_bootstrap=broker.bootstrap,
        topic=settings.sources_topic,
    ).start()
    _say(f"Platform Sources stand-in on {standin.url}")
    dagster = _start_dagster(settings.home, dagster_home)
    try:
        _create_demo_sources(standin, settings.sources_psk, report_dirs)
        if _wait_for_ocp_provider(settings.database_url, stop):
            _announce_ocp_payloads(settings, broker, report_dirs["ocp"])
        _say(f"Dagster UI: {UI_URL}  (Automation -> platform_sources_sensor; Assets -> sources group)")
        _say("Ctrl-C stops everything")
        while not stop.wait(1.0):
            if dagster.poll() is not None:
                _say(f"dagster dev exited with {dagster.returncode}")
                break
    finally:
        _stop_dagster(dagster)
        standin.stop()
        broker.stop()
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
