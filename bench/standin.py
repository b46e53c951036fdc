"""Run the Platform Sources stand-in in its own process for the benchmarks.

``python -m bench.standin --port P --kafka HOST:PORT --topic T [--latency-ms MS]``

The stand-in runs out of process so that its CPU time, GIL and memory are not charged to the
code under test. Two bench-only adjustments, neither of which changes any answer:

- the request log is a bounded deque (the stand-in keeps every request otherwise, which only
  tests need);
- ``--latency-ms`` (or ``POST /_bench/latency?ms=N`` at run time) delays every API answer by a
  fixed time (a sleep, so other requests are served meanwhile), to model a remote Platform
  Sources reached over a network instead of a loopback server that answers in about 2 ms.
  Default 0: no delay.
"""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import threading
import time
from types import FrameType
from urllib.parse import parse_qsl, urlsplit

from koku_dagster.devtools.platform_sources.server import DEFAULT_TOPIC, StandInServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kafka", default=None)
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--psk", default="sources-psk")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="standin %(levelname)s %(name)s: %(message)s")

    server = StandInServer(port=args.port, psk=args.psk, kafka_bootstrap=args.kafka, topic=args.topic)
    server.requests = collections.deque(maxlen=1000)  # type: ignore[assignment]
    delay = [max(0.0, args.latency_ms) / 1000.0]
    handle = server.handle

    def delayed(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if target.startswith("/_bench/latency"):
            query = dict(parse_qsl(urlsplit(target).query))
            delay[0] = max(0.0, float(query.get("ms", "0"))) / 1000.0
            return 204, "application/json", b""
        if delay[0] and target.startswith(("/api/", "/internal/")):
            time.sleep(delay[0])
        return handle(method, target, headers, body)

    server.handle = delayed  # type: ignore[method-assign]

    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.start()
    print(f"stand-in serving on {server.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
