"""Provider data purges bounded by a deadline.

A purge runs in a small shared pool. The pass waits for it until its deadline; a purge still
running then goes on, and the next pass waits for that same purge (never a second one for the
same provider). A purge that failed raises its error to the pass that collects it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="provider-purge")
_RUNNING: dict[str, Future[object]] = {}
_LOCK = threading.Lock()


def purge_within(purge: Callable[[str], object], provider_uuid: str, deadline: float | None) -> bool:
    """Run (or keep waiting for) ``purge(provider_uuid)``; True once it finished, False at the deadline."""
    with _LOCK:
        future = _RUNNING.get(provider_uuid)
        if future is None:
            future = _RUNNING[provider_uuid] = _POOL.submit(purge, provider_uuid)
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        future.result(timeout=wait)
    except FutureTimeout:
        return False
    finally:
        if future.done():
            with _LOCK:
                if _RUNNING.get(provider_uuid) is future:
                    del _RUNNING[provider_uuid]
    return True
