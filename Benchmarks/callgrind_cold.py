#!/usr/bin/env python3
"""Instructions per cold resolution of `sotto serve` under callgrind: a count that repeats from run
to run, unlike CPU time on a shared VM, for judging changes too small for `make bench` to show.

Starts the lab (DoQ authoritatives: SOTTO_BIN's `doq-authority`), runs a copy of SOTTO_BIN with its
debug information stripped (Debian 12's valgrind 3.19 cannot read the toolchain's DWARF 5) under
`valgrind --tool=callgrind`, resolves WARM fresh names one at a time, zeroes the counts
(`callgrind_control -z`), resolves N more, dumps (`-d`), and prints instructions (Ir) per
resolution and the top functions by inclusive count. Kernel time is not counted. Run under the lab
lock from a worktree root:

  SOTTO_BIN=.build/release/sotto N=400 flock /tmp/sotto-lab.lock python3 Benchmarks/callgrind_cold.py

Build SOTTO_BIN as `make release` does (`--static-swift-stdlib`): valgrind 3.19 crashes at start-up
on a build linked to the toolchain's shared Swift runtime.

ENC=1: encryption on (default off). ZONE=doq.test. (say): every name NXDOMAIN under that one lab
zone, so one server and one transport (comma-separated zones: taken in turn); with mute.test. the
silent server (Lab/mute_server.py) is started, and the warm-up's first name holds it as
unresponsive, so the counted names are the SERVFAILs of a dead zone. RESOLVER=unbound: Unbound instead, for comparison. OUT=<dir>: where callgrind.out and the report go.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Lab"))
import bench  # noqa: E402
import lab as labmod  # noqa: E402
from mute_server import MuteServer  # noqa: E402
from load import sequential, write_names  # noqa: E402
from resolvers import Sotto, Unbound, query_once  # noqa: E402

OUT = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="callgrind-"))
OUT.mkdir(parents=True, exist_ok=True)
binary = os.environ["SOTTO_BIN"]
stripped = OUT / "sotto-stripped"
subprocess.run(["cp", binary, str(stripped)], check=True)
subprocess.run(["strip", "--strip-debug", str(stripped)], check=True)
n, warm = int(os.environ.get("N", "400")), int(os.environ.get("WARM", "100"))
# The bench's own command lines (resolvers.py), under valgrind; Sotto's with the stripped copy.
if os.environ.get("RESOLVER") == "unbound":  # the same run against Unbound, for comparison
    resolver = Unbound(OUT / "unbound")
    resolver.work.mkdir(parents=True, exist_ok=True)
    command = resolver.command()
else:
    resolver = Sotto(OUT / "sotto", encryption=os.environ.get("ENC") == "1")
    command = [str(stripped), *resolver.command()[1:]]
port = resolver.port
cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={OUT}/callgrind.out", *command]
lab = labmod.Lab(doq_binary=binary)
lab.start()
proc = None
mute = MuteServer() if "mute.test." in os.environ.get("ZONE", "") else None
try:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(OUT / "valgrind.log", "w"))
    deadline = time.monotonic() + 120
    while query_once(port, "localhost.", timeout=0.5) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{resolver.name} under valgrind did not answer: {(OUT / 'valgrind.log').read_text()[-2000:]}")
        time.sleep(0.2)
    tag = "cg%d" % (time.time() % 100000)
    zones = [z for z in os.environ.get("ZONE", "").split(",") if z]

    def names(tag: str, count: int) -> list[str]:
        if not zones:
            return bench.cold_names(tag, count)
        return [f"{tag}-{i}.{zones[i % len(zones)]}" for i in range(count)]

    sequential(port, write_names(OUT / "warm.txt", names(tag + "w", warm)), timeout=10)
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
    run = sequential(port, write_names(OUT / "cold.txt", names(tag, n)), timeout=10)
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
finally:
    if proc and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)
    if mute:
        mute.close()
    lab.stop()
report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99.9", str(OUT / "callgrind.out.1")], capture_output=True,
                        text=True).stdout
(OUT / "report.txt").write_text(report)
total = next((int(line.split()[0].replace(",", "")) for line in report.splitlines()
              if "PROGRAM TOTALS" in line and line.split()[0][:1].isdigit()), 0)
print(f"completed={run.completed} lost={run.lost} rcodes={run.rcodes}")
print(f"Ir/resolution={total / max(run.completed, 1):,.0f}  (report: {OUT}/report.txt)")
