"""Repeatable figures for the cached-answer path and the cache's memory, Sotto only (needs the lab up).

  cached: `sotto serve` (pinned like in the bench), 2,500 wildcard names warmed, then `dnsperf`
          for PROFILE_SECONDS with 100 outstanding; prints q/s and CPU per query, and with
          PROFILE_PERF=1 (default) leaves a `perf record -e cpu-clock` profile in PROFILE_DIR
          (`perf report -i DIR/perf.data --no-children`; PROFILE_CALLGRAPH=1 adds
          frame-pointer call graphs). valgrind 3.19 (Debian 12) crashes on the
          Swift 6.3 binary, and this VM has no hardware counters, hence sampling on cpu-clock.
  memory: `sotto serve` natively, RSS growth after caching PROFILE_MEMORY_NAMES distinct names
          (the bench's memory workload), bytes per name.

Usage: flock /tmp/sotto-lab.lock python3 Benchmarks/profile_cached.py [cached] [memory]
(with the lab up: `python3 Lab/lab.py up`). SOTTO_BIN selects the binary (release by default).
CPU per query and q/s depend on other load on the machine: repeat and report the spread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import dnsperf, write_names  # noqa: E402
from resolvers import Sotto  # noqa: E402

SECONDS = float(os.environ.get("PROFILE_SECONDS", "10"))
PERF = os.environ.get("PROFILE_PERF", "1") == "1"
MEMORY_NAMES = int(os.environ.get("PROFILE_MEMORY_NAMES", "100000"))
OUT = Path(os.environ.get("PROFILE_DIR", tempfile.mkdtemp(prefix="sotto-profile-")))


def profile_cached() -> None:
    names = [f"c{i}.wild.example.test." for i in range(2500)]
    f = write_names(OUT / "cached.txt", names)
    with Sotto(OUT / "sotto") as res:
        dnsperf(res.port, f, once=True, outstanding=20, timeout=10)
        perf = None
        if PERF:
            graph = ["-g"] if os.environ.get("PROFILE_CALLGRAPH") == "1" else []
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", *graph,
                                     "-o", str(OUT / "perf.data"), "-p", str(res.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu0 = res.cpu_seconds()
        run = dnsperf(res.port, f, seconds=SECONDS, outstanding=100, timeout=10)
        cpu = res.cpu_seconds() - cpu0
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
    print(f"cached: {run.qps:,.0f} q/s, {run.completed} answered, lost {run.lost}; "
          f"CPU {1e6 * cpu / max(run.completed, 1):.2f} us/query" + (f"; perf data {OUT / 'perf.data'}" if PERF else ""))


def profile_memory() -> None:
    names = [f"m{i}.wild.example.test." for i in range(MEMORY_NAMES)]
    f = write_names(OUT / "memory.txt", names)
    with Sotto(OUT / "sotto-mem") as res:
        warm = write_names(OUT / "memwarm.txt", [f"w{i}.wild.example.test." for i in range(200)])
        dnsperf(res.port, warm, once=True, outstanding=20)
        before = res.rss_bytes()
        run = dnsperf(res.port, f, once=True, outstanding=100, timeout=10)
        time.sleep(0.5)
        after = res.rss_bytes()
    print(f"memory: {run.completed} of {run.sent} names, RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MB, "
          f"{(after - before) / max(run.completed, 1):.1f} bytes per name")


if __name__ == "__main__":
    what = sys.argv[1:] or ["cached", "memory"]
    OUT.mkdir(parents=True, exist_ok=True)
    if "cached" in what:
        profile_cached()
    if "memory" in what:
        profile_memory()
