"""The resolvers under test, each as a process pinned to one core and pointed at the NSD lab.

Sotto (`sotto serve`), Unbound and PowerDNS Recursor get the same settings where they have
them: one worker thread, QNAME minimisation on, caches far larger than any workload, the lab's
root hints, loopback authoritatives allowed. Each listens on 127.0.0.1 on a free port; with
`tls=True` Sotto and Unbound also serve DNS-over-TLS on a second one, with the same certificate
(`tls_identity`). PowerDNS Recursor has no DoT listener (that is dnsdist's job).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from load import query_wire

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / "Lab"
ROOT_HINTS = LAB_DIR / "root.hints"
CA_FILE = LAB_DIR / "run" / "pki" / "ca.pem"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
RESOLVER_CORE = os.environ.get("BENCH_RESOLVER_CORE", "0")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def tls_identity(work: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and its key (PEM), made with openssl in
    `work`: the same kind of key for every resolver's DoT listener."""
    cert, key = work / "dot-cert.pem", work / "dot-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def query_once(port: int, name: str = "localhost.", timeout: float = 0.2) -> bytes | None:
    """One A query over UDP; the raw response or None."""
    wire = query_wire(os.getpid() & 0xFFFF, name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            # Connected: while nothing listens yet, the port-unreachable ICMP ends the wait at
            # once (ECONNREFUSED), so start-up is measured to about a millisecond, not to the
            # timeout.
            s.connect(("127.0.0.1", port))
            s.send(wire)
            data = s.recv(4096)
        except OSError:
            return None
    return data if data[:2] == wire[:2] else None


class Resolver:
    """A resolver process; subclasses say how to start it."""

    name = "resolver"

    def __init__(self, work: Path, **options):
        self.work = work
        self.options = options
        self.port = free_port()
        self.tls_port = free_port() if options.get("tls") else None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.first_answer_at = 0.0

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        cmd = ["taskset", "-c", RESOLVER_CORE, *self.command()]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.work / "stderr.log", "w"),
                                     cwd=self.work)
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{(self.work / 'stderr.log').read_text()[-1500:]}")
            # localhost. is answered locally by all three: start-up without lab traffic.
            if query_once(self.port, "localhost.", timeout=0.05) is not None:
                self.first_answer_at = time.monotonic()
                return
            time.sleep(0.001)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    @property
    def startup_seconds(self) -> float:
        return self.first_answer_at - self.started_at

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> "Resolver":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Sotto(Resolver):
    name = "sotto"

    def command(self) -> list[str]:
        binary = os.environ.get("SOTTO_BIN", str(ROOT / ".build/release/sotto"))
        cmd = [binary, "serve", "--root-hints", str(ROOT_HINTS), "--allow-loopback",
               "--listen", f"127.0.0.1:{self.port}", "--cache-size", "2000000",
               "--log-level", "error", "--tls-ca-file", str(CA_FILE), "--threads", "1",
               "--client-rate-limit", "0"]  # the peers have no per-client limit either
        cmd += os.environ.get("BENCH_SOTTO_ARGS", "").split()
        if not self.options.get("encryption", True):
            cmd.append("--no-encryption")
        if self.tls_port:
            cert, key = tls_identity(self.work)
            cmd += ["--listen-tls", f"127.0.0.1:{self.tls_port}", "--tls-certificate", str(cert),
                    "--tls-key", str(key)]
        return cmd


class Unbound(Resolver):
    name = "unbound"

    def command(self) -> list[str]:
        conf = self.work / "unbound.conf"
        dot = ""
        if self.tls_port:
            cert, key = tls_identity(self.work)
            dot = (f"    interface: 127.0.0.1@{self.tls_port}\n    tls-port: {self.tls_port}\n"
                   f"    tls-service-key: \"{key}\"\n    tls-service-pem: \"{cert}\"\n")
        conf.write_text(f"""server:
{dot}    interface: 127.0.0.1@{self.port}
    port: {self.port}
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{self.work}"
    pidfile: ""
    logfile: "{self.work}/unbound.log"
    use-syslog: no
    verbosity: 0
    num-threads: 1
    root-hints: "{ROOT_HINTS}"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    qname-minimisation: yes
    minimal-responses: yes
    msg-cache-size: 512m
    rrset-cache-size: 1024m
    so-reuseport: no
remote-control:
    control-enable: no
""")
        return ["unbound", "-d", "-c", str(conf)]


class PowerDNSRecursor(Resolver):
    name = "pdns-recursor"

    def command(self) -> list[str]:
        (self.work / "recursor.conf").write_text("")
        return ["pdns_recursor", f"--config-dir={self.work}", f"--socket-dir={self.work}",
                "--local-address=127.0.0.1", f"--local-port={self.port}", f"--hint-file={ROOT_HINTS}",
                "--dont-query=", "--threads=1", "--pdns-distributes-queries=no",
                "--max-cache-entries=4000000", "--max-packetcache-entries=4000000",
                "--daemon=no", "--write-pid=no", "--disable-syslog", "--loglevel=3",
                "--qname-minimization=yes", "--max-busy-dot-probes=100", "--allow-from=127.0.0.0/8"]


PEERS = {"unbound": Unbound, "pdns-recursor": PowerDNSRecursor}


def missing_tools() -> list[str]:
    return [t for t in ("taskset", "dnsperf", "unbound", "pdns_recursor", "tcpdump") if not shutil.which(t)]


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sotto-bench-{prefix}-"))
