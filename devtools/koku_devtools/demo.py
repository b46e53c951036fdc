"""``make demo``: a Kafka broker, a stand-in Platform Sources, the cloud emulators, demo reports and ``dagster dev``.

Everything runs on embedded defaults under ``KOKU_HOME`` (``./.koku``). The application
database and the stored data start empty on each run (the broker and the stand-in keep no
state across runs); the Dagster run history under ``.koku/dagster`` is kept. Ctrl-C or SIGTERM
stops everything.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.engine import get_engine
from koku_dagster.infra.db.migrate import migrate
from koku_dagster.infra.db.schema import provider
from koku_dagster.infra.settings import Settings, get_settings
from koku_devtools.dagster_instance import write_instance
from koku_devtools.demo_clouds import demo_clouds
from koku_devtools.nise_reports import OCP_CLUSTER_ID, generate
from koku_devtools.platform_sources.admin import StandInAdmin
from koku_devtools.platform_sources.server import StandInServer
from koku_devtools.services import EmbeddedPostgres, TansuBroker, create_topics
from koku_devtools.uploads import announce_payloads

#: The checkout (``devtools/koku_devtools/demo.py`` -> the repository), for dagster.yaml and workspace.yaml.
REPO = Path(__file__).resolve().parents[2]
UI_URL = "http://127.0.0.1:3000"
#: Dagster's own storage: ``sqlite`` (default) or ``postgres`` (embedded server under ``KOKU_HOME/dagster-pg``).
STORAGE = os.environ.get("DAGSTER_STORAGE") or "sqlite"


def _port_of(url_or_bootstrap: str) -> int:
    return int(url_or_bootstrap.rsplit(":", 1)[1].split("/")[0])


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _fresh_home(settings: Settings) -> Path:
    """Empty the application database and stored data of the previous run; returns the Dagster home."""
    home = settings.home
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance(dagster_home, STORAGE)
    db_file = home / "koku.db"
    for leftover in (db_file.with_suffix(suffix) for suffix in (".db", ".db-wal", ".db-shm")):
        leftover.unlink(missing_ok=True)
    (home / "warehouse.duckdb").unlink(missing_ok=True)
    shutil.rmtree(home / "data", ignore_errors=True)  # files of the previous run's providers
    migrate(settings.database_url)
    return dagster_home


def _start_dagster(home: Path, dagster_home: Path, cloud_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **cloud_env, KOKU_HOME=str(home), DAGSTER_HOME=str(dagster_home))
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


def _create_demo_sources(
    standin: StandInServer, psk: str, report_dirs: dict[str, Path], cloud_sources: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """One source of each of the seven types: the clouds' real types read from the emulators, the local ones."""
    admin = StandInAdmin(standin.url, psk=psk)
    for kind, name, details in cloud_sources:
        admin.create_cost_source(kind, name, **details)
    admin.create_cost_source("aws-local", "Demo AWS (local)", bucket=str(report_dirs["aws"]))
    admin.create_cost_source(
        "azure-local", "Demo Azure (local)", storage_account=str(report_dirs["azure"]), resource_group="demo-rg"
    )
    admin.create_cost_source("gcp-local", "Demo GCP (local)", bucket=str(report_dirs["gcp"]), dataset="demo_dataset")
    admin.create_cost_source("ocp", "Demo OpenShift", cluster_id=OCP_CLUSTER_ID)
    _say("created 7 sources (AWS, Azure and GCP, each real and local, and OpenShift); their events are on Kafka")


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


def _start_services(stack: contextlib.ExitStack, settings: Settings) -> tuple[TansuBroker, StandInServer]:
    """Kafka, the Platform Sources stand-in and (``DAGSTER_STORAGE=postgres``) the instance's PostgreSQL."""
    broker = stack.enter_context(
        TansuBroker(port=_port_of(settings.kafka_bootstrap_servers), workdir=settings.home / "tansu")
    )
    _say(f"Kafka (Tansu) on {broker.bootstrap}")
    create_topics(broker.bootstrap, [settings.sources_topic, settings.upload_topic, settings.validation_topic])
    standin = stack.enter_context(
        StandInServer(
            port=_port_of(settings.sources_api_url),
            psk=settings.sources_psk,
            kafka_bootstrap=broker.bootstrap,
            topic=settings.sources_topic,
        )
    )
    _say(f"Platform Sources stand-in on {standin.url}")
    if STORAGE == "postgres":
        instance_db = stack.enter_context(EmbeddedPostgres(settings.home / "dagster-pg" / "data"))
        os.environ["DAGSTER_PG_URL"] = instance_db.create_database("dagster")
        _say(f"Dagster instance on PostgreSQL ({instance_db.datadir})")
    return broker, standin


def main() -> int:
    settings = get_settings()
    dagster_home = _fresh_home(settings)
    start = date.today().replace(day=1)
    end = start + timedelta(days=2)
    _say(f"generating nise reports ({start} to {end}) under {settings.local_bucket_roots[0]} ...")
    report_dirs = generate(settings.local_bucket_roots[0], start, end)
    stop = _stop_event()
    with contextlib.ExitStack() as stack:
        broker, standin = _start_services(stack, settings)
        _say("starting the cloud emulators (moto, Azurite, BigQuery) and loading the reports into them ...")
        clouds = stack.enter_context(demo_clouds(settings.home / "clouds", report_dirs))
        dagster = _start_dagster(settings.home, dagster_home, clouds.env)
        stack.callback(_stop_dagster, dagster)
        _create_demo_sources(standin, settings.sources_psk, report_dirs, clouds.sources)
        if _wait_for_ocp_provider(settings.database_url, stop):
            _announce_ocp_payloads(settings, broker, report_dirs["ocp"])
        _say(f"Dagster UI: {UI_URL}  (Automation -> platform_sources_sensor; Assets -> sources group)")
        _say("Ctrl-C stops everything")
        while not stop.wait(1.0):
            if dagster.poll() is not None:
                _say(f"dagster dev exited with {dagster.returncode}")
                break
    _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
