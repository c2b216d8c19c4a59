#!/usr/bin/env python3
"""The Sotto test lab: a real DNS hierarchy of NSD instances on loopback.

One NSD process per address, each serving exactly one zone level, so every
referral a resolver follows is a real one.  Python 3 standard library only.

    python3 Lab/lab.py up        start every NSD instance, wait until each answers
    python3 Lab/lab.py status    show which instances are running and answering
    python3 Lab/lab.py down      stop exactly the processes recorded in the pidfiles
    python3 Lab/lab.py unbound   run Unbound against the lab in the foreground (Ctrl-C stops)

Importable by the tests: ``Lab`` (start/stop/instances/stats) and
``Lab.unbound()`` which returns a started ``Unbound`` helper.

Environment: LAB_PORT (default 53) changes the port of every NSD instance; only
useful for poking at the lab by hand, because root hints cannot carry a port,
so resolvers (Unbound, Sotto) need the lab on 53.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
ZONES_DIR = LAB_DIR / "zones"
RUN_DIR = LAB_DIR / "run"
ROOT_HINTS = LAB_DIR / "root.hints"

UNBOUND_ADDRESS = "127.53.255.1"


@dataclasses.dataclass(frozen=True)
class Instance:
    """One NSD process: one address, one zone."""

    name: str
    address: str
    zone: str
    zonefile: str
    case: str

    @property
    def ipv6(self) -> bool:
        return ":" in self.address

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.name

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "nsd.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "nsd.pid"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "ctl.sock"


INSTANCES: tuple[Instance, ...] = (
    Instance("root-a", "127.53.0.1", ".", "root.zone", "root (first hint)"),
    Instance("root-b", "127.53.0.2", ".", "root.zone", "root (second hint)"),
    Instance("test-1", "127.53.1.1", "test.", "test.zone", "TLD test."),
    Instance("test-2", "127.53.1.2", "test.", "test.zone", "TLD test. (second server)"),
    Instance("lab", "127.53.2.1", "lab.", "lab.zone", "TLD lab."),
    Instance("example", "127.53.3.1", "example.test.", "example.test.zone",
             "A/AAAA/MX/TXT/SRV/CAA, in-zone CNAME chain, wildcard, NODATA, NXDOMAIN, deep name"),
    Instance("other", "127.53.4.1", "other.lab.", "other.lab.zone", "end of the cross-zone CNAME chain"),
    Instance("hosts", "127.53.5.1", "hosts.lab.", "hosts.lab.zone", "address of outside.test's NS"),
    Instance("outside", "127.53.6.1", "outside.test.", "outside.test.zone", "out-of-bailiwick NS (ns1.hosts.lab.)"),
    Instance("chain", "127.53.7.1", "chain.test.", "chain.test.zone", "CNAME chain across zones"),
    Instance("dname", "127.53.8.1", "dname.test.", "dname.test.zone", "DNAME to example.test."),
    Instance("broken", "127.53.10.1", "broken.test.", "broken.test.zone",
             "working NS of broken.test (other NS glue 127.53.9.9 is dead)"),
    Instance("lame-ns", "127.53.11.1", "decoy.", "decoy.zone", "lame server for lame.test (REFUSED)"),
    Instance("lame", "127.53.11.2", "lame.test.", "lame.test.zone", "working NS of lame.test"),
    Instance("v6", "::1", "v6.test.", "v6.test.zone", "zone reachable only over IPv6 (AAAA glue ::1)"),
)

# Addresses named in the lab where nothing may listen (broken glue).
DEAD_ADDRESSES = ("127.53.9.9",)


class LabError(RuntimeError):
    pass


def lab_port() -> int:
    return int(os.environ.get("LAB_PORT", "53"))


# --------------------------------------------------------------------------- helpers

def ipv6_loopback_usable() -> bool:
    """True if a UDP socket can be bound on ::1 (IPv6 enabled on lo)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def port_free(address: str, port: int) -> bool:
    """True if both UDP and TCP can bind address:port right now."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            if e.errno == errno.EACCES:
                raise LabError(f"no permission to bind {address}:{port} (port 53 needs root)") from e
            raise
        finally:
            s.close()
    return True


def free_port(address: str = "127.0.0.1") -> int:
    """A port that is currently free for both UDP and TCP on address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
            port = s.getsockname()[1]
        if port_free(address, port):
            return port
    raise LabError(f"no free port found on {address}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return True


def pid_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM one pid, wait for it, SIGKILL if it does not go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def dig(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["dig", *args], capture_output=True, text=True, timeout=timeout)


def dig_status(output: str) -> str | None:
    for line in output.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return None


# --------------------------------------------------------------------------- NSD

def nsd_config(inst: Instance, port: int) -> str:
    d = inst.run_dir
    ip4 = "no" if inst.ipv6 else "yes"
    ip6 = "yes" if inst.ipv6 else "no"
    return f"""# generated by Lab/lab.py -- do not edit
server:
    ip-address: {inst.address}@{port}
    do-ip4: {ip4}
    do-ip6: {ip6}
    username: ""
    chroot: ""
    server-count: 1
    reuseport: no
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{inst.pidfile}"
    logfile: "{d}/nsd.log"
    zonesdir: "{ZONES_DIR}"
    hide-version: yes
    verbosity: 1
    refuse-any: no

remote-control:
    control-enable: yes
    control-interface: "{inst.control_socket}"

zone:
    name: "{inst.zone}"
    zonefile: "{ZONES_DIR / inst.zonefile}"
"""


class Lab:
    """Start/stop the NSD instances of the lab.  Only pids from our pidfiles are touched."""

    def __init__(self, port: int | None = None, with_ipv6: bool | None = None):
        self.port = lab_port() if port is None else port
        self.with_ipv6 = ipv6_loopback_usable() if with_ipv6 is None else with_ipv6
        self.instances = tuple(i for i in INSTANCES if self.with_ipv6 or not i.ipv6)
        self.started: dict[str, int] = {}

    # -- addresses
    def servers(self, zone: str) -> list[str]:
        zone = zone if zone.endswith(".") else zone + "."
        return [i.address for i in self.instances if i.zone == zone]

    def instance(self, name_or_zone: str) -> Instance:
        for i in self.instances:
            if i.name == name_or_zone or i.zone == name_or_zone:
                return i
        raise KeyError(name_or_zone)

    # -- lifecycle
    def cleanup_stale(self) -> list[int]:
        """Kill NSDs left over by a crashed run: only pids from our pidfiles whose
        command line names our config file."""
        killed = []
        for inst in INSTANCES:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid) and str(inst.conf_path) in pid_cmdline(pid):
                kill_pid(pid)
                killed.append(pid)
            inst.pidfile.unlink(missing_ok=True)
        return killed

    def check_prerequisites(self) -> None:
        for tool in ("nsd", "nsd-control", "dig"):
            if not _which(tool):
                raise LabError(f"{tool} not found on PATH (apt-get install nsd dnsutils)")
        busy = [f"{i.address}:{self.port}" for i in self.instances if not port_free(i.address, self.port)]
        if busy:
            raise LabError("lab addresses busy (another DNS server running? e.g. systemctl stop unbound nsd): "
                           + ", ".join(busy))

    def start(self) -> None:
        self.cleanup_stale()
        self.check_prerequisites()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        try:
            for inst in self.instances:
                self._start_one(inst)
            for inst in self.instances:
                self.wait_ready(inst)
        except BaseException:
            self.stop()
            raise

    def _start_one(self, inst: Instance) -> None:
        inst.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("nsd.log", "zone.list", "xfrd.state"):
            (inst.run_dir / stale).unlink(missing_ok=True)
        inst.conf_path.write_text(nsd_config(inst, self.port))
        if len(str(inst.control_socket)) > 100:
            raise LabError(f"control socket path too long for a Unix socket: {inst.control_socket}")
        # nsd daemonizes; the pidfile holds the main process, which takes its children down with it.
        res = subprocess.run(["nsd", "-c", str(inst.conf_path)], capture_output=True, text=True, timeout=20)
        if res.returncode != 0:
            raise LabError(f"nsd {inst.name} failed to start: {res.stderr.strip()} {self._log(inst)}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid):
                self.started[inst.name] = pid
                return
            time.sleep(0.05)
        raise LabError(f"nsd {inst.name} wrote no pidfile: {self._log(inst)}")

    def _log(self, inst: Instance) -> str:
        try:
            return (inst.run_dir / "nsd.log").read_text()[-2000:]
        except OSError:
            return ""

    def answers(self, inst: Instance) -> bool:
        r = dig("+norec", "+time=1", "+tries=1", f"@{inst.address}", "-p", str(self.port), "SOA", inst.zone)
        return r.returncode == 0 and dig_status(r.stdout) == "NOERROR" and " SOA " in r.stdout.replace("\t", " ")

    def wait_ready(self, inst: Instance, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers(inst):
                return
            pid = read_pidfile(inst.pidfile)
            if not pid or not pid_alive(pid):
                raise LabError(f"nsd {inst.name} died: {self._log(inst)}")
            time.sleep(0.1)
        raise LabError(f"nsd {inst.name} on {inst.address} does not answer SOA {inst.zone}")

    def stop(self) -> None:
        """Stop exactly the pids in our pidfiles (those we started), then wait
        until the NSD children forked from them are gone too."""
        for inst in INSTANCES:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid) and str(inst.conf_path) in pid_cmdline(pid):
                kill_pid(pid)
            inst.pidfile.unlink(missing_ok=True)
            self.started.pop(inst.name, None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.05)

    @staticmethod
    def leftover_pids() -> list[int]:
        """Processes (any NSD child) still running with one of our config files."""
        confs = [str(i.conf_path) for i in INSTANCES]
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cmd = pid_cmdline(int(entry))
                if cmd.startswith("nsd ") and any(c in cmd for c in confs) and pid_alive(int(entry)):
                    out.append(int(entry))
        return out

    def running(self) -> dict[str, int]:
        out = {}
        for inst in INSTANCES:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid) and str(inst.conf_path) in pid_cmdline(pid):
                out[inst.name] = pid
        return out

    # -- statistics
    def stats(self, name_or_zone: str) -> dict[str, int]:
        """NSD counters of one instance (nsd-control stats_noreset), e.g. num.queries."""
        inst = self.instance(name_or_zone)
        r = subprocess.run(["nsd-control", "-c", str(inst.conf_path), "stats_noreset"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise LabError(f"nsd-control stats_noreset for {inst.name} failed: {r.stdout}{r.stderr}")
        out: dict[str, int] = {}
        for line in r.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                try:
                    out[key.strip()] = int(float(value))
                except ValueError:
                    pass
        return out

    def queries(self, name_or_zone: str) -> int:
        return self.stats(name_or_zone).get("num.queries", 0)

    # -- Unbound
    def unbound(self, address: str = UNBOUND_ADDRESS, port: int | None = None) -> "Unbound":
        u = Unbound(address=address, port=port)
        u.start()
        return u

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _which(tool: str) -> str | None:
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


# --------------------------------------------------------------------------- Unbound

class Unbound:
    """Unbound as a recursive resolver whose only roots are the lab's.  It can
    never reach the real root servers: root-hints is Lab/root.hints, no trust
    anchor, iterator only."""

    def __init__(self, address: str = UNBOUND_ADDRESS, port: int | None = None):
        self.address = address
        if port is None:
            port = 53 if port_free(address, 53) else free_port(address)
        self.port = port
        self.run_dir = RUN_DIR / "unbound"
        self.proc: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "unbound.conf"

    def config(self) -> str:
        d = self.run_dir
        return f"""# generated by Lab/lab.py -- do not edit
server:
    interface: {self.address}@{self.port}
    port: {self.port}
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    logfile: "{d}/unbound.log"
    use-syslog: no
    verbosity: 1
    num-threads: 1
    root-hints: "{ROOT_HINTS}"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    access-control: ::1/128 allow
    do-ip4: yes
    do-ip6: yes
    qname-minimisation: yes
    minimal-responses: yes
    infra-host-ttl: 60
    outgoing-num-tcp: 4
    so-reuseport: no

remote-control:
    control-enable: no
"""

    def start(self, timeout: float = 15.0) -> None:
        if not _which("unbound"):
            raise LabError("unbound not found on PATH (apt-get install unbound)")
        if not port_free(self.address, self.port):
            raise LabError(f"{self.address}:{self.port} is busy, cannot start Unbound")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "unbound.log").unlink(missing_ok=True)
        self.conf_path.write_text(self.config())
        chk = subprocess.run(["unbound-checkconf", str(self.conf_path)], capture_output=True, text=True)
        if chk.returncode != 0:
            raise LabError(f"unbound-checkconf: {chk.stdout}{chk.stderr}")
        self.proc = subprocess.Popen(["unbound", "-d", "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise LabError(f"unbound exited with {self.proc.returncode}: {err} {self.log()}")
            # localhost. is answered from Unbound's built-in local zone: no lab traffic.
            r = dig("+time=1", "+tries=1", f"@{self.address}", "-p", str(self.port), "localhost.", "A")
            if r.returncode == 0 and dig_status(r.stdout) == "NOERROR":
                return
            time.sleep(0.1)
        self.stop()
        raise LabError("unbound did not start answering")

    def log(self) -> str:
        try:
            return (self.run_dir / "unbound.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def __enter__(self) -> "Unbound":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI

def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    lab = Lab()
    if cmd == "up":
        if not lab.with_ipv6:
            print("warning: ::1 is not usable, v6.test. will not be served", file=sys.stderr)
        try:
            lab.start()
        except LabError as e:
            print(f"lab up failed: {e}", file=sys.stderr)
            return 1
        for inst in lab.instances:
            print(f"up   {inst.name:8} {inst.address:12} {inst.zone:14} pid {lab.started[inst.name]}")
        return 0
    if cmd == "down":
        before = lab.running()
        lab.stop()
        for name, pid in before.items():
            print(f"down {name:8} pid {pid}")
        left = lab.leftover_pids()
        if left:
            print(f"still running: {left}", file=sys.stderr)
        return 1 if left else 0
    if cmd == "status":
        running = lab.running()
        ok = True
        for inst in INSTANCES:
            pid = running.get(inst.name)
            answering = pid is not None and lab.answers(inst)
            ok = ok and answering
            state = "answering" if answering else ("running, NOT answering" if pid else "stopped")
            print(f"{inst.name:8} {inst.address:12} {inst.zone:14} {state:22} {pid or ''}")
        return 0 if ok else 1
    if cmd == "unbound":
        u = Unbound()
        try:
            u.start()
        except LabError as e:
            print(f"unbound failed: {e}", file=sys.stderr)
            return 1
        print(f"unbound resolving against the lab on {u.address} port {u.port}; Ctrl-C stops it")
        try:
            assert u.proc is not None
            u.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            u.stop()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
