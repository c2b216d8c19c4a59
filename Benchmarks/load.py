"""Client load with dnsperf (Debian), pinned to its own core, and what it reports; and a
sequential client for one query outstanding, which dnsperf does not keep (see `sequential`)."""

from __future__ import annotations

import os
import random
import re
import socket
import statistics
import subprocess
import time
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
            timeout: float = 5.0, mode: str = "udp") -> PerfResult:
    """Runs dnsperf against 127.0.0.1:port over `mode` (udp, tcp, dot; 4 clients: 4 connections
    over TCP and DoT). `once`: go through the file exactly once."""
    cmd = ["taskset", "-c", LOAD_CORE, "dnsperf", "-m", mode, "-s", "127.0.0.1", "-p", str(port),
           "-d", str(names_file), "-q", str(outstanding), "-t", str(timeout), "-c", "4"]
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
        # "  Response codes:       NOERROR 2000 (66.67%), NXDOMAIN 1000 (33.33%)"
        line = re.search(r"Response codes:(.*)$", out, re.M)
        for m in re.finditer(r"([A-Z]+) (\d+) \(", line.group(1) if line else ""):
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


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


def query_wire(qid: int, name: str, rdtype: str = "A") -> bytes:
    """A recursion-desired query for name/rdtype, without EDNS (as dnsperf sends by default)."""
    wire = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.rstrip(".").split("."):
        wire += bytes([len(label)]) + label.encode()
    return wire + b"\x00" + QTYPES[rdtype].to_bytes(2, "big") + b"\x00\x01"


def sequential(port: int, names_file: Path, *, timeout: float = 10.0) -> PerfResult:
    """One query at a time over UDP from this process, pinned to the load core while it runs, the
    next sent as soon as the answer is read: a steady single outstanding query, with latencies in seconds.

    `dnsperf -q 1` does not keep one outstanding. Its receiver signals the sender before it counts
    the answer, so the sender often still sees one outstanding, waits again, and is woken only by
    the receiver's next 100 ms poll: against Sotto, ~30% of its queries came after such a pause
    (2026-12-01: 90 of 299 gaps were 100.4-101.3 ms, the rest under 1 ms), and against an instant
    echo responder it managed 22-138 queries/s in eight of nine runs (18k in one). Those
    resolutions start on an idle machine, which is another benchmark."""
    pairs = [line.split() for line in names_file.read_text().splitlines() if line.strip()]
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in LOAD_CORE.split(",")})
    try:
        return _sequential(port, pairs, timeout)
    finally:
        os.sched_setaffinity(0, affinity)


def _sequential(port: int, pairs: list[list[str]], timeout: float) -> PerfResult:
    rng = random.Random()
    start = time.monotonic()
    latencies: list[float] = []
    qnames: list[str] = []
    rcodes: dict[str, int] = {}
    lost = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        for name, rdtype in pairs:
            qid = rng.randrange(65536)
            wire = query_wire(qid, name, rdtype)
            t0 = time.perf_counter()
            try:
                s.send(wire)
            except ConnectionRefusedError:  # an earlier query's port-unreachable, reported now
                try:
                    s.send(wire)
                except ConnectionRefusedError:  # nothing listens
                    lost += 1
                    continue
            deadline = t0 + timeout
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    lost += 1
                    break
                s.settimeout(left)
                try:
                    reply = s.recv(65535)
                except TimeoutError:
                    lost += 1
                    break
                except ConnectionRefusedError:  # nothing listens: counts as lost, no busy loop
                    lost += 1
                    time.sleep(min(left, 0.01))
                    break
                if len(reply) >= 4 and int.from_bytes(reply[:2], "big") == qid and reply[2] & 0x80:
                    latencies.append(time.perf_counter() - t0)
                    qnames.append(name)
                    rcode = RCODES.get(reply[3] & 0x0F, str(reply[3] & 0x0F))
                    rcodes[rcode] = rcodes.get(rcode, 0) + 1
                    break
    elapsed = time.monotonic() - start
    return PerfResult(sent=len(pairs), completed=len(latencies), lost=lost,
                      qps=len(latencies) / elapsed if elapsed > 0 else 0.0, latencies=latencies,
                      avg_latency=statistics.mean(latencies) if latencies else 0.0, rcodes=rcodes, qnames=qnames)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
