#!/usr/bin/env python3
"""Cold-resolution CPU per resolution of one `sotto serve` (SOTTO_BIN), optionally under perf.
Starts and stops the lab itself (DoQ authoritatives: SOTTO_BIN's `doq-authority`, as in make bench;
lab and client on core 1, sotto on core 0). Run from a worktree root, under the lab lock:
  SOTTO_BIN=/path/sotto PERF=0 N=6000 flock /tmp/sotto-lab.lock python3 Benchmarks/profile_cold.py
ZONE=<zone>: all names under that lab zone (one server, one transport). WARM=0: no warm-up (a fresh process, as make bench's cold run; default 300 names). SYSCALLS=1: syscalls per resolution (EVENT=<perf event> counts that instead, e.g. a uprobe; EVENT='syscalls:sys_enter_*' lists them by syscall). ENC=1: encryption on (default off). PACKETS=1: UDP datagrams and TCP segments sent per resolution, machine-wide. THREADS=1: context switches and CPU ticks per thread. OUTSTANDING=1: one query at a time (load.sequential, as make bench; DNSPERF=1 uses dnsperf -q 1 instead). SPLIT=1 (with OUTSTANDING=1): medians of the resolver's time before its upstream query, the server's, and its time after the reply, from a loopback capture, then the time before the upstream query by the previous resolution's transport and the idle time before it (latency_split.py). RESOLVER=unbound|pdns-recursor: profile that peer instead. TARGET_PGREP=<pattern>: perf (PERF, SYSCALLS, TRACE, MALLOCS) watches the lab processes matching it (pgrep -f) instead, e.g. 'doq-authority.*doq\\.test' for the DoQ responder's own CPU per query. MALLOCS=record: malloc call sites (or EVENT's) into OUT/mallocs.data. MALLOCS=1: malloc calls per resolution (perf stat on a libc
uprobe: `perf probe -x /usr/lib/x86_64-linux-gnu/libc.so.6 --add malloc` first). TRACE=1: syscall entries and exits (perf record raw_syscalls) into OUT/trace.data. PERF=1 (default): perf record -e cpu-clock into OUT/perf.data; GRAPH=1 adds fp call graphs, GRAPH=dwarf DWARF ones (callers of leaf functions such as swift_retain, which fp misses).
Prints completed, res/s, p50 and cpu/res (the figure to compare; perf itself adds CPU, so compare with PERF=0).
"""
import os, sys, subprocess, time, signal, tempfile
from pathlib import Path
REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO + "/Benchmarks"); sys.path.insert(0, REPO + "/Lab")
from load import dnsperf, sequential, write_names
from resolvers import Sotto, PEERS
import bench
import lab as labmod
OUT = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="coldprof-")); OUT.mkdir(parents=True, exist_ok=True)
enc = os.environ.get("ENC", "0") == "1"
graph = {"1": ["--call-graph=fp"], "dwarf": ["--call-graph=dwarf," + os.environ.get("STACK", "16384")]}.get(os.environ.get("GRAPH", ""), [])
os.sched_setaffinity(0, {1})
lab = labmod.Lab(doq_binary=os.environ["SOTTO_BIN"])
lab.start()
peer = os.environ.get("RESOLVER")
res = PEERS[peer](OUT / peer) if peer else Sotto(OUT / "sotto", encryption=enc)
try:
  with res:
      warm_names = int(os.environ.get("WARM", "300"))
      if warm_names:  # WARM=0: a fresh process, as in make bench's cold run
          warm = write_names(OUT / "w.txt", bench.cold_names("warm%d" % time.time(), warm_names))
          dnsperf(res.port, warm, once=True, outstanding=20, timeout=10)
      n, zone, tag = int(os.environ.get("N", "12000")), os.environ.get("ZONE"), "p%d" % (time.time() % 100000)
      # ZONE=dot.test. (say): every name NXDOMAIN under that one zone, one exchange with its server each.
      # ZONE=a.test.,b.test.: names spread over those zones in turn.
      zones = zone.split(",") if zone else []
      names = [f"{tag}-{i}.{zones[i % len(zones)]}" for i in range(n)] if zone else bench.cold_names(tag, n)
      f = write_names(OUT / "cold.txt", names)
      perf = None
      # TARGET_PGREP=<pattern>: perf watches the lab processes that match (pgrep -f) instead of the
      # resolver, e.g. 'doq-authority.*doq.test' for the DoQ responder's own CPU per query.
      target = str(res.pid)
      if os.environ.get("TARGET_PGREP"):
          pids = subprocess.run(["pgrep", "-f", os.environ["TARGET_PGREP"]], capture_output=True, text=True).stdout.split()
          target = ",".join(p for p in pids if p != str(os.getpid())) or sys.exit("TARGET_PGREP matched nothing")
      mallocs = os.environ.get("MALLOCS") == "1"
      if os.environ.get("MALLOCS") == "record":
          perf = subprocess.Popen(["perf", "record", "-e", os.environ.get("EVENT", "probe_libc:malloc"), *(graph or ["--call-graph=fp"]), "-o", str(OUT / "mallocs.data"), "-p", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          time.sleep(0.5)
      elif mallocs:
          # Needs `perf probe -x <libc> --add malloc` once (uprobes); counts, independent of CPU noise.
          perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "probe_libc:malloc", "-p", target, "-o", str(OUT / "mallocs.csv")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          time.sleep(0.5)
      elif os.environ.get("SYSCALLS") == "1":
          perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", os.environ.get("EVENT", "raw_syscalls:sys_enter"), "-p", target, "-o", str(OUT / "syscalls.csv")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          time.sleep(0.5)
      elif os.environ.get("TRACE") == "1":
          # Syscall entries and exits with timestamps, for where a resolution's time goes between them.
          perf = subprocess.Popen(["perf", "record", "-e", "raw_syscalls:sys_enter,raw_syscalls:sys_exit", "-o", str(OUT / "trace.data"), "-p", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          time.sleep(0.5)
      elif os.environ.get("PERF", "1") == "1":
          perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", *graph, "-o", str(OUT / "perf.data"), "-p", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          time.sleep(0.5)
      def per_thread():  # thread name -> (context switches, CPU ticks)
          out = {}
          for t in Path(f"/proc/{res.pid}/task").iterdir():
              try:
                  name = (t / "comm").read_text().strip() + "/" + t.name
                  switches = sum(int(l.split()[1]) for l in (t / "status").read_text().splitlines() if "ctxt_switches" in l)
                  fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
              except OSError:
                  continue
              out[name] = (switches, int(fields[11]) + int(fields[12]))
          return out
      def ctxt():
          return sum(v[0] for v in per_thread().values())
      threads0 = per_thread()
      def snmp():  # system-wide packet counters (loopback lab: every packet of the run is counted once per send)
          rows = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines()]
          out = {}
          for names, vals in zip(rows[::2], rows[1::2]):
              for n, v in zip(names[1:], vals[1:]):
                  out[names[0] + n] = int(v)
          return out
      capture = None
      if os.environ.get("SPLIT") == "1":
          import latency_split  # puts Tests/Integration (capture.py) on the path
          from capture import Capture
          capture = Capture(OUT / "split.pcap", bpf=f"net 127.53.0.0/16 or udp port {res.port}").start()
      x0 = ctxt(); s0 = snmp(); k0 = bench.core_ticks()
      c0 = res.cpu_seconds(); t0 = time.monotonic()
      outstanding = int(os.environ.get("OUTSTANDING", "20"))
      if outstanding == 1 and os.environ.get("DNSPERF") != "1":
          run = sequential(res.port, f, timeout=10)  # as make bench; DNSPERF=1: dnsperf -q 1 and its 100 ms pauses
      else:
          run = dnsperf(res.port, f, once=True, outstanding=outstanding, verbose=True, timeout=10)
      el = time.monotonic() - t0; cpu = res.cpu_seconds() - c0; xs = ctxt() - x0; k1 = bench.core_ticks()
      print("busy per core over the run: " + " ".join(f"{c}={bench.busy_percent(k0, k1, c[3:]):.0f}%" for c in sorted(k1)))
      if os.environ.get("THREADS") == "1":  # per thread: context switches per resolution, CPU ticks
          for name, (sw, ticks) in sorted(per_thread().items()):
              sw0, ticks0 = threads0.get(name, (0, 0))
              if sw - sw0 or ticks - ticks0:
                  print(f"thread {name}: ctxsw/res={(sw - sw0) / max(run.completed, 1):.2f} ticks={ticks - ticks0}")
      if capture:
          done = latency_split.resolutions(capture.stop(), res.port)
          print("\n".join(latency_split.report(latency_split.split(done))))
          print("\n".join(latency_split.report_idle(latency_split.before_by_idle(done))))
      if os.environ.get("PACKETS") == "1":
          s1 = snmp()
          for k in ("Udp:OutDatagrams", "Tcp:OutSegs", "Tcp:ActiveOpens"):
              print(f"{k}/res={(s1[k] - s0[k]) / max(run.completed, 1):.2f}")
      if perf: perf.send_signal(signal.SIGINT); perf.wait()
      if mallocs:
          rows = [l for l in (OUT / "mallocs.csv").read_text().splitlines() if "probe_libc:malloc" in l]
          if not rows or not rows[0].split(",")[0].isdigit():
              sys.exit("no malloc count: add the uprobe first (perf probe -x /usr/lib/x86_64-linux-gnu/libc.so.6 --add malloc)")
          count = int(rows[0].split(",")[0])
          print(f"mallocs/res={count / max(run.completed, 1):.1f}")
      if os.environ.get("SYSCALLS") == "1":
          rows = [l.split(",") for l in (OUT / "syscalls.csv").read_text().splitlines() if l[:1].isdigit()]
          per = lambda r: float(r[0]) / max(run.completed, 1)
          if len(rows) == 1:
              print(f"{os.environ.get('EVENT', 'syscalls')}/res={per(rows[0]):.4g}")
          else:  # EVENT='syscalls:sys_enter_*': one line per syscall that ran
              for r in sorted(rows, key=per, reverse=True):
                  if per(r) >= 0.05: print(f"{r[2]}/res={per(r):.2f}")
      if os.environ.get("SMAPS") == "1":  # where the process's memory came from (huge pages, RSS)
          print(" ".join(l.replace(" ", "") for l in Path(f"/proc/{res.pid}/smaps_rollup").read_text().splitlines()
                         if l.split(":")[0] in ("Rss", "Anonymous", "AnonHugePages", "Private_Dirty")))
      fields = Path(f"/proc/{res.pid}/stat").read_text().rsplit(")", 1)[1].split()
      print(f"user/sys split at end: {fields[11]}/{fields[12]} ticks")
      if run.latencies:
          print("latency ms: " + " ".join(f"p{q}={run.percentile(q)*1000:.2f}" for q in (50, 90, 95, 99, 100)) + f" mean={1000*sum(run.latencies)/len(run.latencies):.2f}")
          k = len(run.latencies) // 4  # in order of completion: is the start (probes, handshakes) slower?
          if os.environ.get("ZONES") == "1":  # p50 per zone (the name's last two labels)
              by = {}
              for q, l in zip(run.qnames or [], run.latencies):
                  by.setdefault(".".join(q.rstrip(".").split(".")[-2:]), []).append(l)
              print("p50/p95 ms by zone: " + " ".join(f"{z}={1000*sorted(v)[len(v)//2]:.2f}/{1000*sorted(v)[int(len(v)*0.95)]:.2f}" for z, v in sorted(by.items())))
          t = len(run.latencies) // 10
          print("p95 ms by tenth of the run (in order of completion): " + " ".join(f"{1000*sorted(run.latencies[i*t:(i+1)*t])[int(t*0.95)]:.2f}" for i in range(10) if t))
          print("p50 ms by quarter of the run: " + " ".join(f"{1000*sorted(run.latencies[i*k:(i+1)*k])[k//2]:.2f}" for i in range(4) if k))
      print(f"completed={run.completed} res/s={run.completed/el:.0f} p50={run.percentile(50)*1000:.2f}ms cpu/res={1e6*cpu/max(run.completed,1):.0f}us ctxsw/res={xs/max(run.completed,1):.2f} rcodes={run.rcodes}")

finally:
    lab.stop()
