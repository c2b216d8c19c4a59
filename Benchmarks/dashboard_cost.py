#!/usr/bin/env python3
"""Dashboard cost: CPU of `sotto top` (resolver + dashboard) minus CPU of `sotto serve` (resolver
only) while dnsperf sends cached queries at a fixed rate through the listener. Also the CPU of the
dashboard's own thread (`sotto-dashboard`, from /proc/PID/task) in `top`: not a difference of two
noisy readings, but it leaves out what the resolver does for the dashboard on other threads.

Runs against the NSD lab on loopback, alternating the two modes for BENCH_ROUNDS rounds, the
resolver pinned to core 0 and dnsperf to core 1. Prints medians with min-max spread and writes
JSON under Benchmarks/results/. Issue 5's target: the dashboard costs under 5% of one core at
1,000 queries/second."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Lab"))
import lab as labmod  # noqa: E402

SOTTO = os.environ.get("SOTTO_BIN", str(ROOT / ".build/release/sotto"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
QPS = int(os.environ.get("BENCH_QPS", "1000"))
TICK = os.sysconf("SC_CLK_TCK")
NAMES = [f"{h}.{z}.test." for z in ("dot", "refused", "silent", "mixed", "badcert", "doq", "both")
         for h in ["www", "www2"] + [f"h{i}" for i in range(1, 13)]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def thread_cpu_seconds(pid: int, name: str) -> float | None:
    """utime + stime of the process's threads called `name`; None if it has none."""
    total, found = 0, False
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            if (task / "comm").read_text().strip() != name:
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        found = True
    return total / TICK if found else None


def wait_listening(port: int) -> None:
    for _ in range(100):
        r = subprocess.run(["dig", "+time=1", "+tries=1", "@127.0.0.1", "-p", str(port), "localhost"],
                           capture_output=True, text=True)
        if "NOERROR" in r.stdout:
            return
        time.sleep(0.1)
    raise RuntimeError("sotto did not start listening")


def find_pid(port: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout.split()
    pids = [int(p) for p in out if Path(f"/proc/{p}/exe").exists()
            and os.path.realpath(f"/proc/{p}/exe") == os.path.realpath(SOTTO)]
    if not pids:
        raise RuntimeError("sotto process not found")
    return pids[0]


def run_mode(mode: str, lab, names_file: str) -> dict:
    port = free_port()
    opts = ["--root-hints", str(labmod.ROOT_HINTS), "--allow-loopback", "--listen", f"127.0.0.1:{port}",
            "--tls-ca-file", str(labmod.CA_FILE), "--log-level", "error"]
    tmux = shutil.which("tmux")
    # A tmux server of its own per run: reusing one socket name right after `kill-server` raced the
    # old server's exit ("server exited unexpectedly"), and the next round's `new-session` failed.
    sock = f"sotto-bench-{os.getpid()}-{time.monotonic_ns()}"
    proc = None
    try:
        if mode == "serve":
            proc = subprocess.Popen(["taskset", "-c", "0", SOTTO, "serve", *opts],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = proc.pid
        else:
            cmd = " ".join(["taskset", "-c", "0", SOTTO, "top", *opts, "--log-file", "/tmp/sotto-bench-top.log"])
            subprocess.run([tmux, "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50",
                            "-e", "LANG=C.UTF-8", "-e", "TERM=xterm-256color", cmd], check=True)
        wait_listening(port)
        if mode == "top":
            pid = find_pid(port)
        # Warm the cache (and let probes settle) so the load is cached answers only.
        for n in NAMES:
            subprocess.run(["dig", "+time=2", "+tries=1", "@127.0.0.1", "-p", str(port), n], capture_output=True)
        time.sleep(1.5)
        for n in NAMES:
            subprocess.run(["dig", "+time=2", "+tries=1", "@127.0.0.1", "-p", str(port), n], capture_output=True)
        before = cpu_seconds(pid)
        ui_before = thread_cpu_seconds(pid, "sotto-dashboard") if mode == "top" else 0.0
        if ui_before is None:
            raise RuntimeError("`sotto top` has no sotto-dashboard thread")
        t0 = time.monotonic()
        perf = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", names_file,
                               "-Q", str(QPS), "-l", str(SECONDS), "-q", "100"], capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(pid) - before
        ui_after = thread_cpu_seconds(pid, "sotto-dashboard") if mode == "top" else 0.0
        if ui_after is None:
            raise RuntimeError("the sotto-dashboard thread of `sotto top` ended during the load")
        m = re.search(r"Queries per second:\s+([\d.]+)", perf.stdout)
        lost = re.search(r"Queries lost:\s+(\d+)", perf.stdout)
        result = {"mode": mode, "cpu_percent": 100 * cpu / elapsed, "qps": float(m.group(1)) if m else 0.0,
                  "lost": int(lost.group(1)) if lost else -1}
        if mode == "top":
            result["dashboard_thread_percent"] = 100 * (ui_after - ui_before) / elapsed
        return result
    finally:
        if mode == "top":
            subprocess.run([tmux, "-L", sock, "kill-server"], capture_output=True)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> int:
    for tool in ("dnsperf", "tmux", "taskset", "dig"):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    lab = labmod.Lab()
    lab.start()
    results: list[dict] = []
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            for n in NAMES:
                f.write(f"{n} A\n")
            names_file = f.name
        for r in range(ROUNDS):
            for mode in (("serve", "top") if r % 2 == 0 else ("top", "serve")):
                res = run_mode(mode, lab, names_file)
                res["round"] = r + 1
                results.append(res)
                thread = f"  dashboard thread {res['dashboard_thread_percent']:5.2f}%" if mode == "top" else ""
                print(f"round {r + 1} {mode:5s} cpu {res['cpu_percent']:6.2f}% of one core  "
                      f"qps {res['qps']:8.1f}  lost {res['lost']}{thread}", flush=True)
    finally:
        lab.stop()
    by = {m: [x for x in results if x["mode"] == m] for m in ("serve", "top")}
    diffs = [t["cpu_percent"] - s["cpu_percent"] for s, t in
             zip(sorted(by["serve"], key=lambda x: x["round"]), sorted(by["top"], key=lambda x: x["round"]))]
    print()
    print(f"{'mode':18s} {'median CPU %':>12s} {'min-max':>15s} {'median qps':>11s}")
    for m, label in (("serve", "serve (no UI)"), ("top", "top (dashboard)")):
        c = [x["cpu_percent"] for x in by[m]]
        q = [x["qps"] for x in by[m]]
        print(f"{label:18s} {statistics.median(c):12.2f} {min(c):7.2f}-{max(c):<7.2f} {statistics.median(q):11.1f}")
    cost = statistics.median(diffs)
    threads = [x["dashboard_thread_percent"] for x in by["top"]]
    verdict = "PASS" if cost < 5 else "FAIL"
    print(f"dashboard cost (median of per-round differences): {cost:.2f}% of one core "
          f"(range {min(diffs):.2f}..{max(diffs):.2f}) at {QPS} q/s: {verdict} (target < 5%)")
    print(f"dashboard thread alone: {statistics.median(threads):.2f}% of one core "
          f"(range {min(threads):.2f}..{max(threads):.2f})")
    out = ROOT / "Benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dashboard-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"qps_target": QPS, "seconds": SECONDS, "rounds": results,
                                "dashboard_cost_percent": cost, "pass": cost < 5,
                                "dashboard_thread_percent": statistics.median(threads)}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
