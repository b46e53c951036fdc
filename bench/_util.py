"""Small helpers shared by the benchmarks: RSS sampling, machine facts, tables."""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Sequence


def rss_kb() -> int:
    """Current resident set size of this process, in KiB (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_status_kb(pid: int, field: str = "VmRSS") -> int:
    """A KiB field of ``/proc/<pid>/status`` (``VmRSS``, or ``VmHWM``: the peak RSS); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Samples ``VmRSS`` in a daemon thread; ``peak_kb`` is the highest value seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.start_kb = rss_kb()
        self.peak_kb = self.start_kb
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.start_kb = self.peak_kb = rss_kb()
        self._cpu0 = _own_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_seconds = _own_cpu() - self._cpu0
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_kb())

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.start_kb) / 1024.0


def cpu_seconds(pid: int | None, *, children: bool = False) -> float:
    """CPU time (user + system) used so far by process ``pid`` (plus reaped children if asked)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def system_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds so far: ``busy`` (user, nice, system, irq; softirq is left out, as
    loopback networking runs there on behalf of the bench) and ``steal`` (taken by the hypervisor)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, _softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq) / tick, "steal": steal / tick}


def tcp_counters() -> dict[str, int]:
    """System-wide TCP counters that reveal connection stalls (listen queue overflows, SYN retries)."""
    wanted = {"ListenOverflows", "ListenDrops", "TCPSynRetrans"}
    found: dict[str, int] = {}
    try:
        with open("/proc/net/netstat", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return found
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        for key, value in zip(header.split()[1:], values.split()[1:], strict=False):
            if key in wanted:
                found[key] = int(value)
    return found


def machine() -> dict[str, str]:
    """nproc, memory, CPU model and Python version, for the report."""
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
