"""Run the Platform Sources stand-in in its own process for the benchmarks.

``python -m bench.standin --port P --kafka HOST:PORT --topic T [--latency-ms MS]``

The stand-in runs out of process so that its CPU time, GIL and memory are not charged to the
code under test. Bench-only adjustments, none of which changes any answer or event:

- events are published asynchronously (``publish_async=True``, an option of the stand-in):
  by default each write flushes Kafka while holding the store lock, which serialises every
  write request (status PATCHes included) behind a ~5-10 ms broker round trip; the events,
  their order and the topic's contents are the same;
- the listen backlog is 128 instead of ``socketserver``'s 5: with 5, a burst of new
  connections overflows the accept queue, the kernel drops the SYNs and each dropped client
  waits the 1 s SYN retransmission timeout. The stand-in keeps connections alive (HTTP/1.1),
  so ours opens at most one per worker, but the baseline opens one per request, as Koku's
  session-less ``requests`` calls do;
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

from koku_dagster.devtools.platform_sources import server as server_module
from koku_dagster.devtools.platform_sources.server import DEFAULT_TOPIC, StandInServer

LISTEN_BACKLOG = 128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kafka", default=None)
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--psk", default="sources-psk")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sync-publish", dest="publish_async", action="store_false",
                        help="flush every event to Kafka before answering (the stand-in's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="standin %(levelname)s %(name)s: %(message)s")

    server_module._HttpServer.request_queue_size = LISTEN_BACKLOG  # socketserver's default is 5
    server = StandInServer(
        port=args.port, psk=args.psk, kafka_bootstrap=args.kafka, topic=args.topic, publish_async=args.publish_async
    )
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
