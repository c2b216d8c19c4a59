#!/usr/bin/env python3
"""The least CPU one upstream exchange can cost a client on this machine, next to what Sotto pays.
Builds Benchmarks/exchange_floor.c (gcc, -lssl -lcrypto), starts the lab (NSD on core 1), and runs it
on core 0 against dot.test's NSD (127.53.12.1, Do53 on 53 and DoT on 853 in one process), in
alternating rounds: Do53 with a fresh UDP socket per query (connect, send, recv, close: Sotto's
R-31 way) and DoT on one TLS connection, each one query at a time and with OUTSTANDING (20) in
flight (Do53: that many sockets, waited for with poll(); DoT: pipelined).
Blocking calls and nothing else in the process, so the figures are a floor for any client's
per-exchange cost, not what a resolver with an event loop can reach. Root (the lab). Run from the
repo root, under the lab lock:
  flock /tmp/sotto-lab.lock python3 Benchmarks/exchange_floor.py      (COUNT, ROUNDS, OUTSTANDING)
"""
import os, statistics, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "Lab"))
import lab as labmod

COUNT = int(os.environ.get("COUNT", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
OUTSTANDING = int(os.environ.get("OUTSTANDING", "20"))
ADDRESS = "127.53.12.1"


def build() -> Path:
    out = Path(tempfile.mkdtemp(prefix="floor-")) / "exchange_floor"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(REPO / "Benchmarks/exchange_floor.c"),
                    "-lssl", "-lcrypto"], check=True)
    return out


def run(binary: Path, mode: str, outstanding: int) -> dict:
    r = subprocess.run(["taskset", "-c", "0", str(binary), ADDRESS, mode, str(COUNT), str(outstanding)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"{mode} failed: {r.stdout}{r.stderr}")
    fields = dict(f.split("=") for f in r.stdout.split()[1:])
    return {k: float(v) for k, v in fields.items()}


def main() -> None:
    if ROUNDS < 1 or COUNT < 1 or OUTSTANDING < 1:
        sys.exit("COUNT, ROUNDS and OUTSTANDING must be at least 1")
    binary = build()
    os.sched_setaffinity(0, {1})  # the lab (NSD) inherits core 1; the client runs on core 0
    lab = labmod.Lab()
    lab.start()
    cases = [("Do53, 1 outstanding", "udp", 1), ("DoT, 1 outstanding", "dot", 1)]
    if OUTSTANDING > 1:
        cases += [(f"Do53, {OUTSTANDING} outstanding", "udp", OUTSTANDING),
                  (f"DoT, {OUTSTANDING} outstanding", "dot", OUTSTANDING)]
    results: dict[str, list[dict]] = {c[0]: [] for c in cases}
    try:
        for _ in range(ROUNDS):
            for label, mode, outstanding in cases:
                results[label].append(run(binary, mode, outstanding))
    finally:
        lab.stop()
    print(f"{COUNT} exchanges per run, {ROUNDS} rounds, client on core 0, NSD on core 1")
    print(f"{'':36} {'CPU µs/exchange median (runs)':>40} {'wall µs/exchange':>18}")
    for label, rows in results.items():
        cpu = [r["cpu_us"] for r in rows]
        wall = [r["wall_us"] for r in rows]
        print(f"{label:36} {statistics.median(cpu):>10.1f} ({' '.join(f'{c:.1f}' for c in cpu)})".ljust(78)
              + f"{statistics.median(wall):>14.1f}")


if __name__ == "__main__":
    main()
