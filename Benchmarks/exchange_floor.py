#!/usr/bin/env python3
"""The least CPU one upstream exchange can cost a client on this machine, next to what Sotto pays.
Builds Benchmarks/exchange_floor.c (gcc, with Sotto's DoQ engine Sources/CNgtcp2Shim/doq_engine.c;
OpenSSL, ngtcp2, GnuTLS), starts the lab (on core 1; its DoQ servers are SOTTO_BIN's `doq-authority`
as in make bench, default .build/release/sotto), and runs it on core 0, in alternating rounds:
Do53 with a fresh UDP socket per query (connect, send, recv, close: Sotto's R-31 way) and DoT on
one TLS connection to dot.test's NSD (127.53.12.1, both in one process); Do53 to doq.test's NSD and
DoQ on one QUIC connection to its DoQ server (127.53.17.1). Each one query at a time and with
OUTSTANDING (20) in flight (Do53: that many sockets, waited for with poll(); DoT: pipelined; DoQ:
that many streams).
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
SOTTO_BIN = os.environ.get("SOTTO_BIN", str(REPO / ".build/release/sotto"))


def build() -> Path:
    out = Path(tempfile.mkdtemp(prefix="floor-")) / "exchange_floor"
    subprocess.run(["gcc", "-O2", "-Wall", "-I", str(REPO / "Sources/CNgtcp2"), "-I",
                    str(REPO / "Sources/CNgtcp2Shim/include"), "-o", str(out),
                    str(REPO / "Benchmarks/exchange_floor.c"), str(REPO / "Sources/CNgtcp2Shim/doq_engine.c"),
                    "-lssl", "-lcrypto", "-lngtcp2_crypto_gnutls", "-lngtcp2", "-lgnutls"], check=True)
    return out


def run(binary: Path, address: str, mode: str, outstanding: int, zone: str) -> dict:
    r = subprocess.run(["taskset", "-c", "0", str(binary), address, mode, str(COUNT), str(outstanding), zone],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"{mode} failed: {r.stdout}{r.stderr}")
    fields = dict(f.split("=") for f in r.stdout.split()[1:])
    return {k: float(v) for k, v in fields.items()}


def main() -> None:
    if ROUNDS < 1 or COUNT < 1 or OUTSTANDING < 1:
        sys.exit("COUNT, ROUNDS and OUTSTANDING must be at least 1")
    if not Path(SOTTO_BIN).exists():
        sys.exit(f"no sotto binary at {SOTTO_BIN} (the lab's DoQ servers): swift build -c release, or set SOTTO_BIN")
    binary = build()
    os.sched_setaffinity(0, {1})  # the lab inherits core 1; the client runs on core 0
    lab = labmod.Lab(doq_binary=SOTTO_BIN)
    lab.start()
    cases = []
    for n in sorted({1, OUTSTANDING}):
        cases += [(f"Do53 to dot.test's NSD, {n} outstanding", "127.53.12.1", "udp", n, "dot"),
                  (f"DoT to dot.test's NSD, {n} outstanding", "127.53.12.1", "dot", n, "dot"),
                  (f"Do53 to doq.test's NSD, {n} outstanding", "127.53.17.1", "udp", n, "doq"),
                  (f"DoQ to doq.test's server, {n} outstanding", "127.53.17.1", "doq", n, "doq")]
    results: dict[str, list[dict]] = {c[0]: [] for c in cases}
    try:
        for _ in range(ROUNDS):
            for label, address, mode, outstanding, zone in cases:
                results[label].append(run(binary, address, mode, outstanding, zone))
    finally:
        lab.stop()
    print(f"{COUNT} exchanges per run, {ROUNDS} rounds, client on core 0, the lab on core 1")
    print(f"{'':44} {'CPU µs/exchange median (runs)':>36} {'wall µs/exchange':>18}")
    for label, rows in results.items():
        cpu = [r["cpu_us"] for r in rows]
        wall = [r["wall_us"] for r in rows]
        print(f"{label:44} {statistics.median(cpu):>8.1f} ({' '.join(f'{c:.1f}' for c in cpu)})".ljust(84)
              + f"{statistics.median(wall):>14.1f}")


if __name__ == "__main__":
    main()
