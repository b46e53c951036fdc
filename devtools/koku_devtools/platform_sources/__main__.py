"""Run the stand-in: ``python -m koku_devtools.platform_sources --port 8000 --kafka HOST:PORT``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from koku_devtools.platform_sources.events import DEFAULT_TOPIC
from koku_devtools.platform_sources.http_server import KEEP_ALIVE_SECONDS, LISTEN_BACKLOG
from koku_devtools.platform_sources.server import StandInServer


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m koku_devtools.platform_sources",
        description="Stand-in Platform Sources service (development only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--kafka", default=None, help="bootstrap servers; events are only kept in memory without")
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--psk", default="sources-psk", help="accepted pre-shared key(s), comma-separated")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--publish-async",
        action="store_true",
        help="do not wait for Kafka to take each write's events before answering",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help='delay every API answer by this much (also POST /_standin/latency {"ms": N})',
    )
    parser.add_argument(
        "--request-log-limit", type=int, default=None, help="keep only the latest N requests in memory (default: all)"
    )
    parser.add_argument(
        "--keep-alive-seconds",
        type=float,
        default=KEEP_ALIVE_SECONDS,
        help="close a kept-alive connection idle this long (default %(default)s)",
    )
    parser.add_argument(
        "--listen-backlog",
        type=int,
        default=LISTEN_BACKLOG,
        help="connections queued before they are accepted (default %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    args = _arguments(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = StandInServer(
        args.host,
        args.port,
        psk=args.psk,
        kafka_bootstrap=args.kafka,
        topic=args.topic,
        publish_async=args.publish_async,
        latency_ms=args.latency_ms,
        request_log_limit=args.request_log_limit,
        keep_alive_seconds=args.keep_alive_seconds,
        listen_backlog=args.listen_backlog,
    )
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
