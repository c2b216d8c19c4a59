#!/usr/bin/env python3
"""A fresh `sotto serve`'s cold run as `make bench` makes it (3,000 names of the lab's zones, 20
outstanding, no warm-up), per round: p50, p95, mean and resolutions/s; p50 per 300 completions;
per zone p50/p95/max; and the start-up tail, the completions over 3 ms among the first 40 (a
fresh encrypted process probes every server it meets; OE-10 says that must not slow answers).
Starts and stops the lab itself (DoQ authoritatives: SOTTO_BIN's `doq-authority`, as in make
bench). Run from a worktree root, under the lab lock:

  SOTTO_BIN=.build/release/sotto ENC=1 ROUNDS=3 flock /tmp/sotto-lab.lock python3 Benchmarks/start_tail.py

ENC=0: encryption off. OUT=<dir>: the resolvers' work directories.
"""
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Lab"))
import bench  # noqa: E402
import lab as labmod  # noqa: E402
from load import dnsperf, write_names  # noqa: E402
from resolvers import Sotto  # noqa: E402

SLOW_MS = 3.0
FIRST = 40


def main() -> None:
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="start-tail-"))
    out.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {1})
    lab = labmod.Lab(doq_binary=os.environ["SOTTO_BIN"])
    lab.start()
    try:
        for rnd in range(int(os.environ.get("ROUNDS", "2"))):
            with Sotto(out / f"sotto{rnd}", encryption=os.environ.get("ENC", "1") == "1") as res:
                names = bench.cold_names("st%d%d" % (rnd, time.time() % 10000), 3000)
                run = dnsperf(res.port, write_names(out / "cold.txt", names), once=True, outstanding=20,
                              verbose=True, timeout=10)
                ms = [x * 1000 for x in run.latencies]
                first = [x for x in ms[:FIRST] if x > SLOW_MS]
                print(f"round {rnd}: p50={run.percentile(50) * 1000:.2f} p95={run.percentile(95) * 1000:.2f} "
                      f"mean={statistics.mean(ms):.2f} ms, {run.qps:.0f} resolutions/s; first {FIRST} "
                      f"completions over {SLOW_MS} ms: {len(first)}, max {max(first, default=0):.1f} ms")
                print("  p50 per 300 completions:", [round(statistics.median(ms[i:i + 300]), 2)
                                                    for i in range(0, len(ms), 300)])
                by_zone = collections.defaultdict(list)
                for name, x in zip(run.qnames or [], ms):
                    by_zone[name.rstrip(".").split(".", 1)[1]].append(x)
                for zone, xs in sorted(by_zone.items()):
                    xs.sort()
                    print(f"  {zone:22s} n={len(xs):4d} p50={statistics.median(xs):6.2f} "
                          f"p95={xs[int(0.95 * (len(xs) - 1))]:6.2f} max={xs[-1]:6.2f}")
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
