"""Run the stand-in: ``python -m koku_dagster.devtools.platform_sources --port 8000 --kafka HOST:PORT``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from koku_dagster.devtools.platform_sources.server import DEFAULT_TOPIC, StandInServer


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m koku_dagster.devtools.platform_sources",
                                     description="Stand-in Platform Sources service (development only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--kafka", default=None, help="bootstrap servers; events are only kept in memory without")
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--psk", default="sources-psk", help="accepted pre-shared key(s), comma-separated")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = StandInServer(args.host, args.port, psk=args.psk, kafka_bootstrap=args.kafka, topic=args.topic)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.start()
    print(f"Platform Sources stand-in serving on {server.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
