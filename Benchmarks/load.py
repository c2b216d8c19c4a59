"""Client load with dnsperf (Debian), pinned to its own core, and what it reports."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOAD_CORE = os.environ.get("BENCH_LOAD_CORE", "1")


@dataclass
class PerfResult:
    sent: int
    completed: int
    lost: int
    qps: float
    latencies: list[float]  # seconds, per completed query (only with verbose=True)
    avg_latency: float
    rcodes: dict[str, int]
    qnames: list[str] | None = None  # per completed query, beside `latencies` (verbose=True)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def write_names(path: Path, names: list[str], rdtype: str = "A") -> Path:
    path.write_text("".join(f"{n} {rdtype}\n" for n in names))
    return path


def dnsperf(port: int, names_file: Path, *, seconds: float | None = None, once: bool = False,
            outstanding: int = 100, qps: int | None = None, verbose: bool = False,
            timeout: float = 5.0) -> PerfResult:
    """Runs dnsperf against 127.0.0.1:port. `once`: go through the file exactly once."""
    cmd = ["taskset", "-c", LOAD_CORE, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names_file),
           "-q", str(outstanding), "-t", str(timeout), "-c", "4"]
    if once:
        cmd += ["-n", "1"]
    if seconds is not None:
        cmd += ["-l", str(seconds)]
    if qps is not None:
        cmd += ["-Q", str(qps)]
    if verbose:
        cmd.append("-v")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    def num(pattern: str, cast=float, default=0):
        m = re.search(pattern, out)
        return cast(m.group(1)) if m else default

    latencies: list[float] = []
    rcodes: dict[str, int] = {}
    qnames: list[str] = []
    if verbose:
        # "> NOERROR www.example.test. A 0.000415"
        for m in re.finditer(r"^> (\w+) (\S+) \S+ ([\d.]+)$", out, re.M):
            rcodes[m.group(1)] = rcodes.get(m.group(1), 0) + 1
            qnames.append(m.group(2))
            latencies.append(float(m.group(3)))
    else:
        for m in re.finditer(r"^\s+(NOERROR|NXDOMAIN|SERVFAIL|REFUSED|FORMERR)\s+(\d+)", out, re.M):
            rcodes[m.group(1)] = int(m.group(2))
    return PerfResult(
        sent=num(r"Queries sent:\s+(\d+)", int),
        completed=num(r"Queries completed:\s+(\d+)", int),
        lost=num(r"Queries lost:\s+(\d+)", int),
        qps=num(r"Queries per second:\s+([\d.]+)"),
        latencies=latencies,
        avg_latency=num(r"Average Latency \(s\):\s+([\d.]+)"),
        rcodes=rcodes,
        qnames=qnames,
    )


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
