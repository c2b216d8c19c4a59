#!/usr/bin/env python3
"""`make bench`: Sotto next to Unbound and PowerDNS Recursor on the same machine, in the same run.

Starts the NSD lab, then for BENCH_ROUNDS rounds (default 3) runs every benchmark against each
resolver back to back, rotating the order every round. Each resolver is pinned to core
BENCH_RESOLVER_CORE (0) and dnsperf to BENCH_LOAD_CORE (1); every resolver runs one worker
thread with caches far larger than the workload. Prints one table of medians (with min-max
spread) and Sotto/peer ratios, and writes it all as JSON under Benchmarks/results/.

  1 cached   queries/s and latency for a warmed set of BENCH_CACHED_NAMES names (dnsperf, 100 outstanding)
  2 cold     BENCH_COLD_NAMES distinct uncached names across the lab's zones, 20 outstanding,
             fresh process: completed resolutions/s and p50/p95 latency (Sotto with and without
             encryption) and how busy the resolver's and the load core were; then
             BENCH_UNLOADED_NAMES more, one outstanding (load.sequential, each query sent as the
             previous answer is read): p50/p95 with no queueing, and from a
             loopback capture the resolver's own time and its upstream exchanges' time
  3 memory   RSS growth after caching BENCH_MEMORY_NAMES distinct names, and bytes per cached name
  4 encryption  share of authoritative queries sent encrypted, DoQ's share, and cleartext queries to
             servers already known good, counted from a tcpdump capture (Sotto, PowerDNS Recursor)
  5 start-up time from exec to the first answered query
  6 dashboard CPU of `sotto top` minus `sotto serve` at 1,000 q/s (Benchmarks/dashboard_cost.py)
  7 dot      cached answers to clients over DNS-over-TLS (`--listen-tls`; Unbound's tls-port),
             the names of 1 warmed over UDP, then dnsperf -m dot (4 connections, 100 outstanding):
             queries/s, latency, CPU per query. Sotto and Unbound only: PowerDNS Recursor has no
             DoT listener.
  8 rtt      cold resolution with the lab BENCH_RTT_MS (10) ms away (Benchmarks/rtt.py: a user-space
             delay on every packet between a network namespace of the resolvers' own and the
             lab; root): BENCH_COLD_NAMES names at 20 outstanding, then BENCH_UNLOADED_NAMES one
             at a time, each in a fresh process: p50/p95/mean (Sotto with and without encryption,
             Unbound, PowerDNS Recursor). On loopback an exchange takes microseconds and the cold figures weigh CPU
             time; here they weigh round trips, as on the Internet.

  9 tcp      cached answers to clients over TCP, the names of 1 warmed over UDP, then dnsperf -m tcp
             (4 connections, 100 outstanding): queries/s, latency, CPU per query (all three).

 10 deadzone fresh names in a zone whose only server is silent (mute.test., Lab/mute_server.py;
             root): one name first (the resolver learns the delegation and waits out the
             server's timeouts), then BENCH_DEADZONE_NAMES fresh names at 20 outstanding, dnsperf
             waiting up to 15 s for each: latency of the SERVFAILs, queries that got no answer,
             the queries the silent server received meanwhile and the resolver's CPU (all three).

The lab's DoQ authoritatives are Sotto's own C responder (`sotto doq-authority`, SOTTO_BIN),
not the tests' Python aioquic server, whose CPU per query was larger than the resolver's and so
was measured as Sotto's encryption cost (BENCH_LAB_DOQ=python brings the Python one back). The lab
(NSD, DoQ, tcpdump) runs on BENCH_LAB_CORE (default: the load core), away from the resolver.

After the table: issue 7's targets judged per round, then diagnostics (ratios that are not
targets: how much of encryption's cost at one outstanding is the resolver's own time).

BENCH_ONLY=cached,cold,... runs a subset. BENCH_QUICK=1 is a smoke run (1 round, small sets).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "Lab"))

import lab as labmod  # noqa: E402
from mute_server import MuteServer  # noqa: E402
from load import LOAD_CORE, dnsperf, sequential, write_names  # noqa: E402
from resolvers import RESOLVER_CORE, PowerDNSRecursor, Sotto, Unbound, missing_tools, scratch  # noqa: E402
from rtt import RTTLink  # noqa: E402
from wire_count import WireCounter  # noqa: E402

import latency_split  # noqa: E402  (puts Tests/Integration on the path for capture)
from capture import Capture, CaptureError  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
CACHED_NAMES = int(os.environ.get("BENCH_CACHED_NAMES", "500" if QUICK else "2500"))
CACHED_SECONDS = float(os.environ.get("BENCH_CACHED_SECONDS", "3" if QUICK else "10"))
COLD_NAMES = int(os.environ.get("BENCH_COLD_NAMES", "300" if QUICK else "3000"))
# Then, in the same process, this many more fresh names one at a time: latency without queueing.
UNLOADED_NAMES = int(os.environ.get("BENCH_UNLOADED_NAMES", "60" if QUICK else "400"))
MEMORY_NAMES = int(os.environ.get("BENCH_MEMORY_NAMES", "5000" if QUICK else "100000"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
ALL = ["cached", "cold", "memory", "encryption", "startup", "dashboard", "dot", "rtt", "tcp", "deadzone"]
DEADZONE_NAMES = int(os.environ.get("BENCH_DEADZONE_NAMES", "200" if QUICK else "2000"))
RTT_MS = float(os.environ.get("BENCH_RTT_MS", "10"))
# Zones of the lab whose servers differ in what they speak on 853 (none, DoT, DoQ, both, broken).
COLD_ZONES = ["dot.test.", "doq.test.", "both.test.", "mixed.test.", "refused.test.", "silent.test.",
              "badcert.test.", "example.test.", "quicsilent.test.", "badquic.test."]

RESOLVERS = {"sotto": Sotto, "unbound": Unbound, "pdns-recursor": PowerDNSRecursor}


def wanted(name: str) -> bool:
    return not ONLY or name in ONLY


def cold_names(tag: str, n: int) -> list[str]:
    """n distinct names: a third wildcard hits (NOERROR), the rest NXDOMAIN spread over the zones."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(f"{tag}-{i}.wild.example.test.")
        else:
            out.append(f"{tag}-{i}.{COLD_ZONES[i % len(COLD_ZONES)]}")
    return out


def rotate(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


# ------------------------------------------------------------------------------ benchmarks

def bench_cached(cls, r: int, work: Path) -> dict:
    names = [f"c{i}.wild.example.test." for i in range(CACHED_NAMES)]
    f = write_names(work / "cached.txt", names)
    with cls(work / cls.name) as res:
        warm = dnsperf(res.port, f, once=True, outstanding=20)
        res_cpu0, k0 = res.cpu_seconds(), core_ticks()
        run = dnsperf(res.port, f, seconds=CACHED_SECONDS, outstanding=100)
        cpu, k1 = res.cpu_seconds() - res_cpu0, core_ticks()
        return {"startup_s": res.startup_seconds, "warm_completed": warm.completed, "qps": run.qps,
                "avg_latency_ms": run.avg_latency * 1000, "lost": run.lost,
                "cpu_per_kquery_ms": 1e6 * cpu / max(run.completed, 1),
                # A resolver core short of 100% with the load core near it: dnsperf set the pace.
                "resolver_core_busy_pct": busy_percent(k0, k1, RESOLVER_CORE),
                "load_core_busy_pct": busy_percent(k0, k1, LOAD_AND_LAB_CORES)}


def bench_stream(cls, r: int, work: Path, mode: str) -> dict:
    """Cached answers over a stream transport (mode "tcp" or "dot"): warmed over UDP, then loaded
    over 4 connections."""
    names = [f"c{i}.wild.example.test." for i in range(CACHED_NAMES)]
    f = write_names(work / "cached.txt", names)
    with cls(work / cls.name, tls=mode == "dot") as res:
        warm = dnsperf(res.port, f, once=True, outstanding=20)
        res_cpu0 = res.cpu_seconds()
        run = dnsperf(res.tls_port if mode == "dot" else res.port, f, seconds=CACHED_SECONDS, outstanding=100,
                      mode=mode)
        cpu = res.cpu_seconds() - res_cpu0
        return {"warm_completed": warm.completed, "qps": run.qps, "avg_latency_ms": run.avg_latency * 1000,
                "lost": run.lost, "cpu_per_kquery_ms": 1e6 * cpu / max(run.completed, 1), "rcodes": run.rcodes}


def bench_deadzone(cls, r: int, work: Path, mute: MuteServer) -> dict:
    """Fresh names in mute.test., whose only server reads queries and answers none."""
    first = write_names(work / "first.txt", [f"first-{r}.mute.test."])
    names = write_names(work / "names.txt", [f"d{i}-r{r}.mute.test." for i in range(DEADZONE_NAMES)])
    with cls(work / cls.name) as res:
        warm = dnsperf(res.port, first, once=True, outstanding=1, timeout=15)
        before, cpu0 = mute.count(), res.cpu_seconds()
        run = dnsperf(res.port, names, once=True, outstanding=20, timeout=15, verbose=True)
        cpu = res.cpu_seconds() - cpu0
        lat = sorted(run.latencies)
        return {"warm_rcodes": warm.rcodes, "completed": run.completed, "lost": run.lost, "rcodes": run.rcodes,
                "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                "p95_ms": 1000 * lat[int(len(lat) * 0.95)] if lat else None,
                "dead_server_queries": mute.count() - before,
                "cpu_us_per_query": 1e6 * cpu / max(run.completed + run.lost, 1)}


def bench_dot(cls, r: int, work: Path) -> dict:
    return bench_stream(cls, r, work, "dot")


def bench_tcp(cls, r: int, work: Path) -> dict:
    return bench_stream(cls, r, work, "tcp")


LAB_CORE = os.environ.get("BENCH_LAB_CORE", LOAD_CORE)
# dnsperf's core and the lab's (the same one unless BENCH_LAB_CORE says otherwise).
LOAD_AND_LAB_CORES = ",".join(sorted(set(LOAD_CORE.split(",")) | set(LAB_CORE.split(","))))
LAB_PIDS: set[int] = set()  # the lab's processes (set in main), for their CPU time


def cpu_of(pids: set[int]) -> float:
    """utime+stime in seconds of pids and all their descendants (NSD's server processes)."""
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    total = 0.0
    for pid, (ppid, cpu) in stats.items():
        p, hops = pid, 0
        while p not in pids and p in stats and p > 1 and hops < 64:
            p, hops = stats[p][0], hops + 1
        if p in pids:
            total += cpu
    return total


def core_ticks() -> dict[str, tuple[int, int]]:
    """Per core: (busy, total) ticks from /proc/stat (user..steal; guest time is already in user,
    and steal counts as busy: the core was not there for the work). Ticks are 10 ms, so over a
    cold run of 0.1-0.3 s a figure is good to several points only."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            v = [int(x) for x in line.split()[1:9]]
            out[line.split()[0]] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy_percent(before: dict, after: dict, cores: str) -> float:
    """How busy the cores in `cores` ("1" or "0,1"; not ranges) were between two core_ticks()
    readings; NaN if none of them is known."""
    busy = total = 0
    for c in cores.split(","):
        key = f"cpu{c.strip()}"
        if key in before and key in after:
            busy += after[key][0] - before[key][0]
            total += after[key][1] - before[key][1]
    return 100 * busy / total if total else float("nan")


def bench_cold(cls, r: int, work: Path, encryption: bool = True) -> dict:
    names = cold_names(f"cold{r}{'e' if encryption else 'p'}{int(time.time()) % 100000}", COLD_NAMES)
    f = write_names(work / "cold.txt", names)
    kw = {} if cls is not Sotto else {"encryption": encryption}
    with cls(work / cls.name, **kw) as res:
        cpu0, lab0, k0 = res.cpu_seconds(), cpu_of(LAB_PIDS), core_ticks()
        t0 = time.monotonic()
        run = dnsperf(res.port, f, once=True, outstanding=20, verbose=True, timeout=10)
        elapsed = time.monotonic() - t0
        n = max(run.completed, 1)
        cpu1, lab1, k1 = res.cpu_seconds(), cpu_of(LAB_PIDS), core_ticks()
        # One outstanding: how long a resolution takes when nothing queues on the resolver's core,
        # which the 20-outstanding figures (CPU-bound) do not show.
        # Captured on lo, each resolution splits into the resolver's own time and the time its
        # upstream exchanges took (latency_split.py): the servers' part is the lab's, not the
        # resolver's, and differs by transport (NSD answers DoT later than Do53).
        # A capture that does not start or drops packets costs only the split, not the run.
        cap: Capture | None = Capture(work / "unloaded.pcap", bpf=f"net 127.53.0.0/16 or udp port {res.port}")
        try:
            cap.start()
        except CaptureError as e:
            print(f"  cold       no capture for the 1-outstanding split: {e}", flush=True)
            cap = None
        try:
            # Not dnsperf -q 1, which pauses 100 ms after about a third of its queries (load.sequential).
            alone = sequential(res.port, write_names(work / "unloaded.txt",
                                                     cold_names(f"u{r}{int(time.time()) % 100000}", UNLOADED_NAMES)),
                               timeout=10)
        finally:
            packets = cap.stop() if cap else []
        own, server = [], []
        if cap and cap.dropped == 0:
            own, server = latency_split.own_and_server(latency_split.resolutions(packets, res.port))
        return {"unloaded_p50_ms": alone.percentile(50) * 1000, "unloaded_p95_ms": alone.percentile(95) * 1000,
                "unloaded_completed": alone.completed,
                "unloaded_split": len(own),
                "unloaded_own_p50_us": statistics.median(own) * 1e6 if own else None,
                "unloaded_upstream_p50_us": statistics.median(server) * 1e6 if server else None,
                "cpu_us_per_resolution": 1e6 * (cpu1 - cpu0) / n,
                "lab_cpu_us_per_resolution": 1e6 * (lab1 - lab0) / n,
                # At 20 outstanding the slower side sets the pace: a load core (dnsperf + the lab)
                # near 100% means the round measured the lab, not the resolver.
                "resolver_core_busy_pct": busy_percent(k0, k1, RESOLVER_CORE),
                "load_core_busy_pct": busy_percent(k0, k1, LOAD_AND_LAB_CORES),
                "startup_s": res.startup_seconds, "completed": run.completed, "lost": run.lost,
                "resolutions_per_s": run.completed / elapsed, "p50_ms": run.percentile(50) * 1000,
                "p95_ms": run.percentile(95) * 1000, "rcodes": run.rcodes,
                # At a fixed number outstanding the median flatters a run in which some queries
                # stall: they hold slots, the rest see a shorter queue (2026-12-04: a stall-free
                # build had the higher p50 yet the lower mean and the higher throughput).
                "mean_ms": statistics.mean(run.latencies) * 1000 if run.latencies else None}


# Lab zones by what their servers speak on port 853, for the rtt benchmark's per-kind medians:
# example.test.'s server (and its wildcard's) is NSD with DoT only, which answers pipelined queries
# with Nagle on; the DoQ zones' servers are QUIC; these speak Do53 only or fail every probe.
ZONE_KINDS = {"nsd_dot": ("example.test.",), "doq": ("doq.test.", "both.test."),
              "do53": ("refused.test.", "silent.test.", "quicsilent.test.")}


def kind_p50s(qnames: list[str], latencies: list[float]) -> dict[str, float | None]:
    """The p50 in ms of the resolutions under each ZONE_KINDS group (None when it had none)."""
    by: dict[str, list[float]] = {k: [] for k in ZONE_KINDS}
    for name, seconds in zip(qnames, latencies):
        name = name.lower().rstrip(".") + "."
        for kind, zones in ZONE_KINDS.items():
            if any(name.endswith("." + z) for z in zones):
                by[kind].append(seconds * 1000)
    return {f"{k}_p50_ms": statistics.median(v) if v else None for k, v in by.items()}


def bench_rtt(cls, r: int, work: Path, link: RTTLink, encryption: bool = True) -> dict:
    """Cold resolution with every upstream packet delayed (`link`): a fresh process in the link's
    namespace, COLD_NAMES names at 20 outstanding, then UNLOADED_NAMES one at a time."""
    names = cold_names(f"rtt{r}{'e' if encryption else 'p'}{int(time.time()) % 100000}", COLD_NAMES)
    f = write_names(work / "rtt.txt", names)
    alone_names = write_names(work / "rtt1.txt", cold_names(f"rttu{r}{int(time.time()) % 100000}", UNLOADED_NAMES))
    kw = {} if cls is not Sotto else {"encryption": encryption}
    with link.inside(), cls(work / cls.name, **kw) as res:
        t0 = time.monotonic()
        run = dnsperf(res.port, f, once=True, outstanding=20, verbose=True, timeout=10)
        elapsed = time.monotonic() - t0
        alone = sequential(res.port, alone_names, timeout=10)
    return {"completed": run.completed, "lost": run.lost, "resolutions_per_s": run.completed / elapsed,
            "p50_ms": run.percentile(50) * 1000, "p95_ms": run.percentile(95) * 1000,
            "mean_ms": statistics.mean(run.latencies) * 1000 if run.latencies else None, "rcodes": run.rcodes,
            "unloaded_completed": alone.completed, "unloaded_p50_ms": alone.percentile(50) * 1000,
            "unloaded_p95_ms": alone.percentile(95) * 1000,
            "unloaded_mean_ms": statistics.mean(alone.latencies) * 1000 if alone.latencies else None,
            **kind_p50s(run.qnames or [], run.latencies)}


def bench_rtt_rounds() -> dict[str, list[dict]]:
    """ROUNDS rounds of bench_rtt for every resolver (Sotto also without encryption), one link."""
    with RTTLink(RTT_MS, scratch("rtt-link")) as link:
        return rounds_with_unencrypted_sotto(
            "rtt", lambda cls, r, work, encryption: bench_rtt(cls, r, work, link, encryption),
            lambda res: (f"completed={res['completed']} lost={res['lost']} "
                         f"res/s={res['resolutions_per_s']:.1f} p50={res['p50_ms']:.2f}ms "
                         f"p95={res['p95_ms']:.2f}ms mean={res['mean_ms'] or float('nan'):.2f}ms "
                         f"alone: p50={res['unloaded_p50_ms']:.2f}ms p95={res['unloaded_p95_ms']:.2f}ms "
                         f"rcodes={res['rcodes']}"))


def bench_memory(cls, r: int, work: Path) -> dict:
    names = [f"m{i}.wild.example.test." for i in range(MEMORY_NAMES)]
    f = write_names(work / "memory.txt", names)
    with cls(work / cls.name) as res:
        warm = write_names(work / "memwarm.txt", [f"w{i}.wild.example.test." for i in range(200)])
        dnsperf(res.port, warm, once=True, outstanding=20)
        before = res.rss_bytes()
        run = dnsperf(res.port, f, once=True, outstanding=100, timeout=10)
        time.sleep(0.5)
        after = res.rss_bytes()
        return {"startup_s": res.startup_seconds, "completed": run.completed, "lost": run.lost,
                "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
                "bytes_per_name": (after - before) / max(run.completed, 1)}


def bench_encryption(cls, r: int, work: Path) -> dict:
    names = cold_names(f"enc{r}{int(time.time()) % 100000}", COLD_NAMES)
    f = write_names(work / "enc.txt", names)
    with cls(work / cls.name) as res:
        counter = WireCounter(work / f"{cls.name}.pcap").start()
        try:
            run = dnsperf(res.port, f, once=True, outstanding=20, timeout=10)
        finally:
            counts = counter.stop()
        dropped = counter.capture.dropped
        if dropped:
            # A lossy capture undercounts some transports more than others: no shares from it.
            print(f"  encryption: tcpdump dropped {dropped} packets; this round's counts are not used",
                  file=sys.stderr, flush=True)
            return {"completed": run.completed, "rcodes": run.rcodes, "capture_dropped": dropped}
        out = {"completed": run.completed, "rcodes": run.rcodes, "capture_dropped": 0, **counts.as_dict()}
        if counts.cleartext_to_good:  # keep the evidence
            keep = HERE / "results" / f"encryption-{cls.name}-{time.strftime('%Y%m%dT%H%M%S')}.pcap"
            keep.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", str(work / f"{cls.name}.pcap"), str(keep)], check=False)
            out["pcap"] = str(keep)
        return out


# ------------------------------------------------------------------------------ driver

def run_rounds(label: str, fn, classes: dict) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {k: [] for k in classes}
    keys = list(classes)
    for r in range(ROUNDS):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            work = scratch(f"{label}-{k}")
            res = fn(classes[k], r, work)
            res["overdue"] = overdue_answers(work)
            results[k].append(res)
            print(f"  {label:10s} round {r + 1} {k:22s} " +
                  " ".join(f"{a}={v:.4g}" if isinstance(v, float) else f"{a}={v}" for a, v in res.items()
                           if not isinstance(v, dict)), flush=True)
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return results


UNENCRYPTED = "sotto (no encryption)"


def rounds_with_unencrypted_sotto(label: str, fn, line) -> dict[str, list[dict]]:
    """`run_rounds` for benchmarks that also run Sotto without encryption: ROUNDS rounds of
    fn(cls, r, work, encryption=...) for every resolver and for UNENCRYPTED, the order rotated
    every round; each round prints `line(result)`."""
    classes = {**RESOLVERS, UNENCRYPTED: Sotto}
    results: dict[str, list[dict]] = {k: [] for k in classes}
    for r in range(ROUNDS):
        keys = list(classes)
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            work = scratch(f"{label}-{k.replace(' ', '')}")
            res = fn(classes[k], r, work, encryption=(k != UNENCRYPTED))
            res["overdue"] = overdue_answers(work)
            results[k].append(res)
            print(f"  {label:10s} round {r + 1} {k:22s} {line(res)}", flush=True)
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return results


def latency_rows(label: str, results: dict[str, list[dict]]) -> list[tuple]:
    """The table rows a cold run has (resolutions/s; p50, p95, mean at 20 outstanding; p50, p95 at
    one outstanding), medians over the rounds."""
    rows = [("resolutions/s", "resolutions_per_s", "higher"), ("p50 ms", "p50_ms", "lower"),
            ("p95 ms", "p95_ms", "lower"), ("mean ms", "mean_ms", "lower"),
            ("p50 ms, 1 outstanding", "unloaded_p50_ms", "lower"),
            ("p95 ms, 1 outstanding", "unloaded_p95_ms", "lower")]
    return [(label, metric, {k: med(v, key) for k, v in results.items()}, better) for metric, key, better in rows]


def overdue_answers(work: Path) -> int:
    """Queries Sotto's listener answered SERVFAIL because their resolution overran its deadline
    (`resolutionsOverdue`, one error line each in its log; a bug if ever above 0)."""
    return sum(log.read_text(errors="replace").count("counted in resolutionsOverdue")
               for log in work.rglob("stderr.log"))


def overdue_report(raw: dict) -> str:
    """The overdue line: every round of every resolver whose run counted overdue answers. Only the
    per-resolver sections hold rounds; "dashboard" is one summary dict (its "rounds" a list of
    numbers), which is not searched."""
    found = [f"{section} round {r + 1} {k}: {res['overdue']}" for section, by in raw.items()
             if section != "dashboard" and isinstance(by, dict)
             for k, rows in by.items() if isinstance(rows, list)
             for r, res in enumerate(rows) if isinstance(res, dict) and res.get("overdue")]
    return ("queries answered SERVFAIL as overdue (resolutionsOverdue, from Sotto's log): " +
            ("; ".join(found) if found else "none in any round"))


def med(rows: list[dict], key: str) -> tuple[float, float, float]:
    xs = [row[key] for row in rows if row.get(key) is not None]
    if not xs:
        return (float("nan"),) * 3
    return statistics.median(xs), min(xs), max(xs)


def cached_rows(label: str, results: dict[str, list[dict]]) -> list[tuple[str, str, dict, str]]:
    """The table's three rows of a cached-answers benchmark (UDP, DoT or TCP): queries/s,
    latency and CPU per query, the median and spread of each resolver's rounds."""
    return [(label, "queries/s", {k: med(v, "qps") for k, v in results.items()}, "higher"),
            (label, "avg latency ms", {k: med(v, "avg_latency_ms") for k, v in results.items()}, "lower"),
            (label, "CPU µs/query", {k: med(v, "cpu_per_kquery_ms") for k, v in results.items()}, "lower")]


def deadzone_rows(results: dict[str, list[dict]]) -> list[tuple[str, str, dict, str]]:
    """The dead-zone benchmark's table rows, medians over the rounds."""
    rows = [("SERVFAIL p50 ms", "p50_ms", "lower"), ("SERVFAIL p95 ms", "p95_ms", "lower"),
            ("unanswered after 15 s", "lost", "lower"), ("queries to the dead server", "dead_server_queries", "lower"),
            ("CPU µs/query", "cpu_us_per_query", "lower")]
    return [("dead zone", metric, {k: med(v, key) for k, v in results.items()}, better) for metric, key, better in rows]


def main() -> int:
    missing = missing_tools()
    if missing:
        print(f"missing tools: {', '.join(missing)} (make bench installs them)", file=sys.stderr)
        return 2
    if os.cpu_count() and os.cpu_count() < 2:
        print("warning: fewer than 2 cores; resolver and load share a core", file=sys.stderr)
    lab_core = LAB_CORE
    if lab_core:
        # The lab's processes (and tcpdump) inherit this: all on the load core, none on the
        # resolver's, for every resolver alike.
        os.sched_setaffinity(0, {int(c) for c in lab_core.split(",")})
    doq_binary = None
    if os.environ.get("BENCH_LAB_DOQ", "sotto") == "sotto":
        doq_binary = os.environ.get("SOTTO_BIN", str(ROOT / ".build/release/sotto"))
    lab = labmod.Lab(doq_binary=doq_binary)
    print(f"lab: DoQ servers {'sotto doq-authority' if doq_binary else 'Lab/doq_server.py (aioquic)'}, "
          f"lab processes on core {lab_core or 'any'}", flush=True)
    lab.start()
    LAB_PIDS.update(lab.started.values())
    table: list[tuple[str, str, dict[str, tuple[float, float, float]], str]] = []
    raw: dict[str, dict] = {}
    try:
        if wanted("cached"):
            print("1 cached answers", flush=True)
            raw["cached"] = run_rounds("cached", bench_cached, RESOLVERS)
            table += cached_rows("cached", raw["cached"])
            # dnsperf on one core sets the pace when the load core is full and the resolver's is not.
            table.append(("cached", "resolver core busy %",
                          {k: med(v, "resolver_core_busy_pct") for k, v in raw["cached"].items()}, "info"))
            table.append(("cached", "load core busy %",
                          {k: med(v, "load_core_busy_pct") for k, v in raw["cached"].items()}, "info"))
        if wanted("dot"):
            print("7 cached answers to clients over DoT", flush=True)
            classes = {"sotto": Sotto, "unbound": Unbound}
            raw["dot"] = run_rounds("dot", bench_dot, classes)
            table += cached_rows("cached DoT", raw["dot"])
        if wanted("tcp"):
            print("9 cached answers to clients over TCP", flush=True)
            raw["tcp"] = run_rounds("tcp", bench_tcp, RESOLVERS)
            table += cached_rows("cached TCP", raw["tcp"])
        if wanted("deadzone"):
            print("10 fresh names in a zone whose only server is silent", flush=True)
            try:
                mute = MuteServer()
            except OSError as e:
                print(f"  deadzone   not run: cannot bind the silent server (root?): {e}", flush=True)
                raw["deadzone_not_run"] = str(e)
            else:
                try:
                    raw["deadzone"] = run_rounds("deadzone", lambda c, r, w: bench_deadzone(c, r, w, mute), RESOLVERS)
                finally:
                    mute.close()
                table += deadzone_rows(raw["deadzone"])
        if wanted("cold"):
            print("2 cold resolution", flush=True)
            results = rounds_with_unencrypted_sotto("cold", bench_cold, lambda res: (
                f"completed={res['completed']} lost={res['lost']} "
                f"res/s={res['resolutions_per_s']:.1f} p50={res['p50_ms']:.2f}ms p95={res['p95_ms']:.2f}ms "
                f"cpu={res['cpu_us_per_resolution']:.0f}us lab-cpu={res['lab_cpu_us_per_resolution']:.0f}us "
                f"busy: resolver core {res['resolver_core_busy_pct']:.0f}% "
                f"load core {res['load_core_busy_pct']:.0f}% "
                f"alone: p50={res['unloaded_p50_ms']:.2f}ms p95={res['unloaded_p95_ms']:.2f}ms "
                f"own={res['unloaded_own_p50_us'] or float('nan'):.0f}us "
                f"upstream={res['unloaded_upstream_p50_us'] or float('nan'):.0f}us "
                f"rcodes={res['rcodes']}"))
            raw["cold"] = results
            table += latency_rows("cold", results)
            table.append(("cold", "own µs, 1 outstanding", {k: med(v, "unloaded_own_p50_us") for k, v in results.items()},
                          "lower"))
            table.append(("cold", "upstream µs, 1 outstanding",
                          {k: med(v, "unloaded_upstream_p50_us") for k, v in results.items()}, "info"))
            table.append(("cold", "CPU µs/resolution", {k: med(v, "cpu_us_per_resolution") for k, v in results.items()},
                          "lower"))
            table.append(("cold", "lab CPU µs/resolution",
                          {k: med(v, "lab_cpu_us_per_resolution") for k, v in results.items()}, "lower"))
            table.append(("cold", "resolver core busy %",
                          {k: med(v, "resolver_core_busy_pct") for k, v in results.items()}, "info"))
            table.append(("cold", "load+lab core busy %",
                          {k: med(v, "load_core_busy_pct") for k, v in results.items()}, "info"))
        if wanted("memory"):
            print("3 memory", flush=True)
            raw["memory"] = run_rounds("memory", bench_memory, RESOLVERS)
            table.append(("memory", f"RSS MB after {MEMORY_NAMES} names",
                          {k: med(v, "rss_after_mb") for k, v in raw["memory"].items()}, "lower"))
            table.append(("memory", "bytes per cached name",
                          {k: med(v, "bytes_per_name") for k, v in raw["memory"].items()}, "lower"))
        if wanted("encryption"):
            print("4 encryption (from a packet capture)", flush=True)
            classes = {"sotto": Sotto, "pdns-recursor": PowerDNSRecursor}
            raw["encryption"] = run_rounds("encryption", bench_encryption, classes)
            for key, label in (("encrypted_share", "encrypted share"), ("doq_share", "DoQ share"),
                               ("cleartext_to_known_good", "cleartext to known-good")):
                table.append(("encryption", label, {k: med(v, key) for k, v in raw["encryption"].items()},
                              "lower" if key == "cleartext_to_known_good" else "higher"))
        if wanted("rtt"):
            print(f"8 cold resolution with the lab {RTT_MS:g} ms away", flush=True)
            try:
                raw["rtt"] = bench_rtt_rounds()
            except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
                # Root and TUN devices are needed; without them the other benchmarks still stand.
                print(f"  rtt        not run: {e}", flush=True)
                raw["rtt_not_run"] = str(e)
            if "rtt" in raw:
                table += latency_rows(f"rtt {RTT_MS:g} ms", raw["rtt"])
        if wanted("startup"):
            # Measured at every start above; a dedicated round if nothing else ran.
            starts: dict[str, list[dict]] = {k: [] for k in RESOLVERS}
            for section in ("cached", "cold", "memory"):
                for k, rows in raw.get(section, {}).items():
                    if k in starts:
                        starts[k] += [{"startup_ms": row["startup_s"] * 1000} for row in rows]
            if not any(starts.values()):
                for r in range(max(ROUNDS, 3)):
                    for k, cls in RESOLVERS.items():
                        with cls(scratch(f"start-{k}")) as res:
                            starts[k].append({"startup_ms": res.startup_seconds * 1000})
            raw["startup"] = starts
            table.append(("start-up", "ms to first answer", {k: med(v, "startup_ms") for k, v in starts.items()},
                          "lower"))
    finally:
        lab.stop()
    if wanted("dashboard"):
        print("6 dashboard cost", flush=True)
        env = dict(os.environ, BENCH_ROUNDS=str(ROUNDS), BENCH_SECONDS="5" if QUICK else "20")
        out = subprocess.run([sys.executable, str(HERE / "dashboard_cost.py")], env=env, capture_output=True,
                             text=True)
        print(out.stdout[-1200:], end="")
        if out.returncode != 0:
            print(f"dashboard benchmark failed (exit {out.returncode}), no dashboard row:\n{out.stderr[-1200:]}",
                  flush=True)
        latest = sorted((HERE / "results").glob("dashboard-*.json"))
        if out.returncode == 0 and latest:
            d = json.loads(latest[-1].read_text())
            raw["dashboard"] = d
            table.append(("dashboard", "CPU % of a core at 1k q/s", {"sotto": (d["dashboard_cost_percent"],) * 3},
                          "lower"))
    print_table(table)
    # The JSON first, and again once the reports are made: a fault in them must not lose the run.
    out_dir = HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    record = {"machine": machine(), "rounds": ROUNDS, "quick": QUICK, "raw": raw,
              "table": [{"benchmark": b, "metric": m, "better": better,
                         "values": {k: {"median": v[0], "min": v[1], "max": v[2]} for k, v in vals.items()},
                         "ratios": ratios(vals)} for b, m, vals, better in table]}
    path.write_text(json.dumps(record, indent=2, default=str))
    verdicts = targets(raw)
    diag = diagnostics(raw)
    path.write_text(json.dumps({**record, "targets": verdicts, "diagnostics": diag}, indent=2, default=str))
    print_targets(verdicts)
    print_diagnostics(diag)
    print("\n" + overdue_report(raw))
    print(f"wrote {path}")
    return 0


# Issue 7's acceptance targets, judged round by round: round r of every resolver ran in the same
# round, minutes apart, so a ratio within a round cancels most of a shared machine's slow and fast
# periods, which move whole rounds by up to 2x. (section, metric, numerator, denominator, bound,
# "max"|"min"|"above", label)
TARGETS = [
    ("cached", "qps", "sotto", "unbound", 1.0, "min", "cached q/s, Sotto / Unbound"),
    ("cold", "p50_ms", "sotto (no encryption)", "unbound", 1.0, "max",
     "cold p50, Sotto without encryption / Unbound"),
    ("cold", "p50_ms", "sotto", "unbound", 1.0, "max", "cold p50, Sotto with encryption / Unbound"),
    ("memory", "bytes_per_name", "sotto", "unbound", 1.0, "max", "bytes per cached name, Sotto / Unbound"),
    ("encryption", "encrypted_share", "sotto", "pdns-recursor", 1.0, "above",
     "encrypted share, Sotto / PowerDNS Recursor"),
    ("cold", "p50_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption, cold p50 with / without, 20 outstanding"),
    ("cold", "unloaded_p50_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption, cold p50 with / without, 1 outstanding"),
    # The median at 20 outstanding hides stalls (see bench_cold's mean_ms); the mean does not.
    ("cold", "mean_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption, cold mean with / without, 20 outstanding"),
    # The same targets with the lab a round trip away (BENCH_RTT_MS), as authoritatives are.
    ("rtt", "p50_ms", "sotto (no encryption)", "unbound", 1.0, "max",
     "cold p50 at the RTT, Sotto without encryption / Unbound"),
    ("rtt", "p50_ms", "sotto", "unbound", 1.0, "max", "cold p50 at the RTT, Sotto with encryption / Unbound"),
    ("rtt", "p50_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption at the RTT, cold p50, 20 outstanding"),
    ("rtt", "mean_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption at the RTT, cold mean, 20 outstanding"),
    ("rtt", "unloaded_p50_ms", "sotto", "sotto (no encryption)", 1.10, "max",
     "cost of encryption at the RTT, cold p50, 1 outstanding"),
]


LOAD_BOUND_PCT = 90.0

# Not issue 7's targets: ratios that say where a target's gap lies. (section, metric, numerator,
# denominator, label)
DIAGNOSTICS = [
    ("cold", "unloaded_own_p50_us", "sotto", "sotto (no encryption)",
     "encryption's cost in Sotto's own time (upstream left out), 1 outstanding"),
    ("cold", "unloaded_upstream_p50_us", "sotto", "sotto (no encryption)",
     "encryption's cost in the upstream exchanges' time, 1 outstanding"),
    ("cold", "unloaded_own_p50_us", "sotto (no encryption)", "unbound",
     "own time, Sotto without encryption / Unbound, 1 outstanding"),
    ("cold", "mean_ms", "sotto (no encryption)", "unbound", "cold mean, Sotto without encryption / Unbound"),
    ("cold", "mean_ms", "sotto", "unbound", "cold mean, Sotto with encryption / Unbound"),
    # At the RTT, by the kind of server (ZONE_KINDS), with encryption / without, 20 outstanding.
    ("rtt", "nsd_dot_p50_ms", "sotto", "sotto (no encryption)",
     "at the RTT, example.test. (NSD, DoT only) p50, with / without encryption"),
    ("rtt", "doq_p50_ms", "sotto", "sotto (no encryption)", "at the RTT, the DoQ zones' p50, with / without encryption"),
    ("rtt", "do53_p50_ms", "sotto", "sotto (no encryption)",
     "at the RTT, the Do53-only zones' p50, with / without encryption"),
]


def diagnostics(raw: dict) -> list[dict]:
    """Per-round ratios of DIAGNOSTICS (None where a side has no figure) and their median."""
    out = []
    for section, key, num, den, label in DIAGNOSTICS:
        rows = raw.get(section, {})
        if num not in rows or den not in rows:
            continue
        rs = [a[key] / b[key] if usable(a.get(key)) and usable(b.get(key)) and b[key] else None
              for a, b in zip(rows[num], rows[den])]
        valid = [r for r in rs if r is not None]
        out.append({"diagnostic": label, "ratios": rs,
                    "median": statistics.median(valid) if valid else float("nan")})
    return out


def print_diagnostics(rows: list[dict]) -> None:
    if not rows:
        return
    print("diagnostics (not targets): where the cold latency goes, per round")
    for d in rows:
        per = " ".join("-" if x is None else f"{x:.3f}" for x in d["ratios"])
        print(f"  {d['diagnostic']:74s} median {d['median']:6.3f}  rounds: {per}")
    print()


def usable(v) -> bool:
    return isinstance(v, (int, float)) and v == v and v >= 0


def targets(raw: dict) -> list[dict]:
    """Each target's per-round ratios and how many rounds met it; absolute checks for the rest.
    A round without a usable figure on either side (a capture that dropped packets, nothing
    completed, an RSS growth of zero or less) counts as not met, and its ratio is None."""
    out = []
    for section, key, num, den, bound, kind, label in TARGETS:
        rows = raw.get(section, {})
        if num not in rows or den not in rows:
            continue
        rs, ok = [], []
        for a, b in zip(rows[num], rows[den]):
            x, y = a.get(key), b.get(key)
            # A zero is no measurement (nothing completed) except for a share, where it is a result.
            if not (usable(x) and usable(y)) or (kind != "above" and (x == 0 or y == 0)):
                rs.append(None)
                ok.append(False)
                continue
            rs.append(x / y if y else float("inf"))
            ok.append(x > y * bound if kind == "above" else x >= y * bound if kind == "min" else x <= y * bound)
        valid = [r for r in rs if r is not None]
        verdict = {"target": label, "bound": f"{dict(above='>', min='>=', max='<=')[kind]} {bound:.2f}x",
                   "ratios": rs, "median": statistics.median(valid) if valid else float("nan"),
                   "met_rounds": sum(ok), "rounds": len(rs)}
        if key in ("p50_ms", "qps"):
            # Rounds where the load core (dnsperf and the lab's servers) was nearly saturated on
            # either side: there the ratio says as much about the lab as about the resolver (for
            # cached q/s: dnsperf's own ceiling, which both resolvers may reach).
            verdict["load_bound_rounds"] = sum(
                any((row.get("load_core_busy_pct") or 0) >= LOAD_BOUND_PCT for row in pair)
                for pair in zip(rows[num], rows[den]))
        out.append(verdict)
    enc = raw.get("encryption", {}).get("sotto", [])
    for key, label, good in (("cleartext_to_known_good", "cleartext queries to known-good servers",
                              lambda v: v == 0), ("doq_share", "DoQ share (DoQ used where offered)",
                                                  lambda v: v > 0)):
        if not enc:
            break
        vs = [row.get(key) if usable(row.get(key)) else None for row in enc]
        valid = [v for v in vs if v is not None]
        out.append({"target": label, "bound": "= 0" if key.startswith("clear") else "> 0", "values": vs,
                    "median": statistics.median(valid) if valid else float("nan"),
                    "met_rounds": sum(v is not None and good(v) for v in vs), "rounds": len(vs)})
    for t in out:
        t["verdict"] = ("met" if t["met_rounds"] == t["rounds"] > 0 else
                        "not met" if t["met_rounds"] == 0 else "mixed")
    return out


def print_targets(verdicts: list[dict]) -> None:
    if not verdicts:
        return
    print("targets (issue 7), judged per round: met = every round, mixed = some rounds")
    for t in verdicts:
        per = " ".join("-" if x is None else f"{x:.3f}" for x in t.get("ratios", t.get("values", [])))
        bound = t.get("load_bound_rounds")
        note = f" (load core >= {LOAD_BOUND_PCT:.0f}% busy in {bound} of them)" if bound else ""
        print(f"  {t['target']:62s} {t['bound']:>9s}  median {t['median']:6.3f}  rounds: {per:20s}"
              f" {t['met_rounds']}/{t['rounds']} {t['verdict']}{note}")
    print()


def ratios(vals: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    s = vals.get("sotto", (float("nan"),))[0]
    return {f"sotto/{k}": (s / v[0] if v[0] else float("nan")) for k, v in vals.items() if k != "sotto"}


def fmt(x: float) -> str:
    if x != x:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) < 0.01:  # e.g. a CPU difference of -0.000927 %: noise, shown as 0.00
        return f"{x:.2f}"
    return f"{x:.3g}"


def print_table(table) -> None:
    cols = ["sotto", "unbound", "pdns-recursor", "sotto (no encryption)"]
    print()
    print(f"{'benchmark':11s} {'metric':28s} " + " ".join(f"{c:>24s}" for c in cols) + "   ratios (sotto/peer)")
    for bench, metric, vals, better in table:
        cells = []
        for c in cols:
            if c in vals:
                m, lo, hi = vals[c]
                cells.append(f"{fmt(m) + ' (' + fmt(lo) + '-' + fmt(hi) + ')':>24s}")
            else:
                cells.append(f"{'':>24s}")
        rs = ", ".join(f"{k.split('/')[1]} {v:.2f}x" for k, v in ratios(vals).items() if v == v)
        hint = "" if better == "info" else f" ({better} is better)"
        print(f"{bench:11s} {metric:28s} " + " ".join(cells) + f"   {rs}{hint}")
    print()


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for tool, args in (("unbound", ["-V"]), ("pdns_recursor", ["--version"])):
        try:
            out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=5)
            versions[tool] = (out.stdout + out.stderr).strip().splitlines()[0][:120]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[tool] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), **versions}


if __name__ == "__main__":
    sys.exit(main())
