#!/usr/bin/env python3
"""The Sotto test lab: a real DNS hierarchy of NSD instances on loopback.

One NSD process per address, each serving exactly one zone level, so every
referral a resolver follows is a real one.  Python 3 standard library only, except
the DoQ servers (Lab/doq_server.py and doq_query): aioquic + dnspython from PyPI.

    python3 Lab/lab.py up        make the lab PKI, start every NSD instance (and the silent
                                 853 listeners, the DoQ servers), wait until each answers
                                 (DoT ones over TLS, DoQ ones over QUIC too)
    python3 Lab/lab.py status    show which instances are running and answering
    python3 Lab/lab.py down      stop exactly the processes recorded in the pidfiles
    python3 Lab/lab.py unbound   run Unbound against the lab in the foreground (Ctrl-C stops)

    python3 Lab/lab.py doq-check ADDR [NAME [TYPE]]   one DoQ query (dnspython) to ADDR:853

DoT (RFC 7858 / RFC 9539 opportunistic encryption to authoritatives): instances
with ``dot="valid"`` or ``dot="badcert"`` also listen on ADDR@853 with TLS; the
certificates are made with openssl at every start under run/pki/ (lab CA:
``CA_FILE``).  ``dot="silent"``: a Python listener accepts TCP 853 and never
sends a byte.  ``dot=None``: nothing listens on 853 (connection refused).

DoQ (RFC 9250): Debian 12 has no DoQ-capable authoritative server, so instances with
``doq="valid"`` or ``doq="misbehave"`` also run ``Lab/doq_server.py`` (aioquic +
dnspython, from PyPI) on UDP ADDR:853, serving the same zone file with a lab-CA
certificate, session tickets and 0-RTT.  ``doq="silent"``: a Python UDP listener that
swallows every datagram.  ``doq=None``: nothing on UDP 853 (ICMP port unreachable), except
on NSD DoT instances, where NSD's own plain-DNS UDP socket answers QUIC with FORMERR.
Without aioquic/dnspython the lab still starts, without the DoQ servers (``Lab.with_doq``).

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
import random
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
PKI_DIR = RUN_DIR / "pki"
CA_FILE = PKI_DIR / "ca.pem"          # the lab CA: give it to sotto as --tls-ca-file
DOT_PORT = 853                        # fixed: RFC 9539 probes only ever go to 853
BADCERT_NAME = "wrong-name.invalid"   # CN/SAN of the expired, wrong-name certificate
BADCERT_NOT_BEFORE = "20240101000000Z"
BADCERT_NOT_AFTER = "20250101000000Z"  # long expired

UNBOUND_ADDRESS = "127.53.255.1"


@dataclasses.dataclass(frozen=True)
class Instance:
    """One NSD process: one address, one zone."""

    name: str
    address: str
    zone: str
    zonefile: str
    case: str
    # DoT behaviour on ADDRESS:853: None = nothing listens (TCP RST), "valid" = NSD DoT with a
    # lab-CA-signed certificate for ns_name, "badcert" = NSD DoT with an expired certificate for
    # BADCERT_NAME, "silent" = a Python listener that accepts and never sends a byte.
    dot: str | None = None
    ns_name: str | None = None  # the NS name the valid certificate is issued for
    # DoQ behaviour on UDP ADDRESS:853: None = nothing (ICMP unreachable; FORMERR from NSD's plain
    # socket where NSD serves DoT), "valid" = Lab/doq_server.py, "misbehave" = doq_server.py with
    # --misbehave reset,bad-id,bad-length, "silent" = a Python UDP socket that swallows everything.
    doq: str | None = None

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

    @property
    def nsd_tls(self) -> bool:
        return self.dot in ("valid", "badcert")

    @property
    def doq_server(self) -> bool:
        """Lab/doq_server.py runs on UDP ADDRESS:853."""
        return self.doq in ("valid", "misbehave")

    @property
    def needs_cert(self) -> bool:
        return self.nsd_tls or self.doq_server

    @property
    def doq_pidfile(self) -> Path:
        return self.run_dir / "doq853.pid"

    @property
    def doq_log(self) -> Path:
        return self.run_dir / "doq.log"

    @property
    def tls_key(self) -> Path:
        return PKI_DIR / f"{self.name}.key"

    @property
    def tls_pem(self) -> Path:
        return PKI_DIR / f"{self.name}.pem"

    @property
    def listener_pidfile(self) -> Path:
        return self.run_dir / "silent853.pid"


INSTANCES: tuple[Instance, ...] = (
    Instance("root-a", "127.53.0.1", ".", "root.zone", "root (first hint)"),
    Instance("root-b", "127.53.0.2", ".", "root.zone", "root (second hint)"),
    Instance("test-1", "127.53.1.1", "test.", "test.zone", "TLD test. (DoT, valid cert)",
             dot="valid", ns_name="ns1.nic.test."),
    Instance("test-2", "127.53.1.2", "test.", "test.zone", "TLD test. (second server, Do53 only)"),
    Instance("lab", "127.53.2.1", "lab.", "lab.zone", "TLD lab."),
    Instance("example", "127.53.3.1", "example.test.", "example.test.zone",
             "A/AAAA/MX/TXT/SRV/CAA, in-zone CNAME chain, wildcard, NODATA, NXDOMAIN, deep name; DoT",
             dot="valid", ns_name="ns1.example.test."),
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
    Instance("dot", "127.53.12.1", "dot.test.", "dot.test.zone", "DoT with a valid lab-CA certificate",
             dot="valid", ns_name="ns1.dot.test."),
    Instance("badcert", "127.53.13.1", "badcert.test.", "badcert.test.zone",
             "DoT with an expired certificate for the wrong name", dot="badcert", ns_name="ns1.badcert.test."),
    Instance("refused", "127.53.14.1", "refused.test.", "refused.test.zone",
             "Do53 only: TCP 853 refused (RST)"),
    Instance("silent", "127.53.15.1", "silent.test.", "silent.test.zone",
             "Do53; TCP 853 accepts and never answers (handshake timeout)", dot="silent"),
    Instance("mixed-dot", "127.53.16.1", "mixed.test.", "mixed.test.zone",
             "mixed.test. server with DoT (ns1)", dot="valid", ns_name="ns1.mixed.test."),
    Instance("mixed-plain", "127.53.16.2", "mixed.test.", "mixed.test.zone",
             "mixed.test. server, Do53 only (ns2)"),
    Instance("doq", "127.53.17.1", "doq.test.", "doq.test.zone",
             "DoQ only (Python DoQ on UDP 853); TCP 853 refused", doq="valid", ns_name="ns1.doq.test."),
    Instance("both", "127.53.18.1", "both.test.", "both.test.zone",
             "DoT (NSD, TCP 853) and DoQ (Python, UDP 853)", dot="valid", doq="valid",
             ns_name="ns1.both.test."),
    Instance("quicsilent", "127.53.19.1", "quicsilent.test.", "quicsilent.test.zone",
             "Do53; UDP 853 swallows every datagram; TCP 853 refused", doq="silent"),
    Instance("badquic", "127.53.20.1", "badquic.test.", "badquic.test.zone",
             "DoQ that resets / sends ID != 0 / a bad length for reset*/badid*/badlen*",
             doq="misbehave", ns_name="ns1.badquic.test."),
    Instance("zerottl", "127.53.21.1", "zerottl.test.", "zerottl.test.zone",
             "delegated with TTL 0 NS and glue (usable for one resolution, never cached)"),
)

# Addresses named in the lab where nothing may listen (broken glue).
DEAD_ADDRESSES = ("127.53.9.9",)


class LabError(RuntimeError):
    pass


def doq_available() -> bool:
    """aioquic and dnspython importable by this interpreter (the DoQ servers need them)."""
    try:
        import aioquic  # noqa: F401
        import dns.query  # noqa: F401
        import dns.zone  # noqa: F401
        return True
    except ImportError:
        return False


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


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(address: str = "127.0.0.1") -> int:
    """A port that is currently free for both UDP and TCP on address.

    Drawn outside the kernel's ephemeral range: a port handed out by bind(0) can be taken again
    by any process's next outgoing socket (a dig, an upstream query, a TIME_WAIT connection)
    before the server under test binds it, which failed a CI run with EADDRINUSE."""
    lo, hi = _ephemeral_range()
    candidates = [p for p in range(20000, 32768) if not lo <= p <= hi] or list(range(1024, lo))
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.choice(candidates)
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
    tls = ""
    if inst.nsd_tls:
        # NSD serves TLS on the ip-address lines whose port is tls-port (it also opens plain UDP there).
        tls = f"""    ip-address: {inst.address}@{DOT_PORT}
    tls-port: {DOT_PORT}
    tls-service-key: "{inst.tls_key}"
    tls-service-pem: "{inst.tls_pem}"
"""
    return f"""# generated by Lab/lab.py -- do not edit
server:
    ip-address: {inst.address}@{port}
{tls}    do-ip4: {ip4}
    do-ip6: {ip6}
    username: ""
    chroot: ""
    server-count: {2 if inst.nsd_tls and inst.doq_server else 1}
    reuseport: {"yes" if inst.nsd_tls and inst.doq_server else "no"}
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
    # No response rate limiting: NSD's default (200/s per /24, slip 2) blocks the wildcard under
    # benchmark load, so resolvers would be measured on TC/TCP retries and dropped answers.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0

remote-control:
    control-enable: yes
    control-interface: "{inst.control_socket}"

zone:
    name: "{inst.zone}"
    zonefile: "{ZONES_DIR / inst.zonefile}"
"""



# --------------------------------------------------------------------------- PKI (openssl)

_OPENSSL_CNF = """# generated by Lab/lab.py -- do not edit
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ca]
default_ca = lab_ca
[lab_ca]
dir = {pki}
database = {pki}/index.txt
new_certs_dir = {pki}/issued
serial = {pki}/serial
certificate = {pki}/ca.pem
private_key = {pki}/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
"""


def _leaf_ext(names: list[str]) -> str:
    san = ", ".join(f"DNS:{n}" for n in names)
    return f"""[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str, cwd: Path | None = None) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    if r.returncode != 0:
        raise LabError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()}")


def make_pki(instances) -> None:
    """Fresh lab CA and one leaf certificate per NSD DoT instance, under run/pki/.

    valid:   CN and SAN = the server's NS name, signed by the lab CA, valid now.
    badcert: CN and SAN = BADCERT_NAME (not the NS name), signed by the lab CA,
             validity BADCERT_NOT_BEFORE..BADCERT_NOT_AFTER (in the past; `openssl ca`
             because OpenSSL 3.0's `x509 -req` cannot set dates in the past).
    Each leaf's pem holds the leaf followed by the CA certificate."""
    if PKI_DIR.exists():
        for f in PKI_DIR.rglob("*"):
            if f.is_file():
                f.unlink()
    (PKI_DIR / "issued").mkdir(parents=True, exist_ok=True)
    cnf = PKI_DIR / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF.format(pki=PKI_DIR))
    (PKI_DIR / "index.txt").write_text("")
    (PKI_DIR / "serial").write_text("1000\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-config", str(cnf), "-x509", *ec, "-keyout", str(PKI_DIR / "ca.key"),
             "-out", str(CA_FILE), "-days", "30", "-subj", "/CN=Sotto lab CA", "-extensions", "ca_ext")
    for inst in instances:
        if not inst.needs_cert:
            continue
        name = BADCERT_NAME if inst.dot == "badcert" else (inst.ns_name or inst.zone).rstrip(".")
        csr = PKI_DIR / f"{inst.name}.csr"
        ext = PKI_DIR / f"{inst.name}.ext"
        ext.write_text(_leaf_ext([name]))
        _openssl("req", "-config", str(cnf), "-new", *ec, "-keyout", str(inst.tls_key), "-out", str(csr),
                 "-subj", f"/CN={name}")
        leaf = PKI_DIR / f"{inst.name}.leaf.pem"
        if inst.dot != "badcert":
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(CA_FILE), "-CAkey", str(PKI_DIR / "ca.key"),
                     "-set_serial", str(0x2000 + INSTANCES.index(inst)), "-days", "30", "-sha256",
                     "-extfile", str(ext), "-extensions", "leaf", "-out", str(leaf))
        else:
            _openssl("ca", "-config", str(cnf), "-batch", "-notext", "-in", str(csr), "-out", str(leaf),
                     "-startdate", BADCERT_NOT_BEFORE, "-enddate", BADCERT_NOT_AFTER,
                     "-extfile", str(ext), "-extensions", "leaf")
        inst.tls_pem.write_text(leaf.read_text() + CA_FILE.read_text())
        inst.tls_key.chmod(0o600)


def cert_info(pem: Path) -> str:
    """`openssl x509 -noout -subject -enddate -ext subjectAltName` of a certificate file."""
    r = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-subject", "-startdate", "-enddate",
                        "-ext", "subjectAltName"], capture_output=True, text=True, timeout=10)
    return r.stdout


# --------------------------------------------------------------------------- TCP 853 behaviours

def silent_listener(address: str, port: int) -> None:
    """Accept TCP connections on address:port, read and discard what arrives,
    never send a byte; close a connection when the peer does.  Runs until killed."""
    import selectors
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, port))
    srv.listen(128)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"silent listener on {address}:{port}", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is srv:
                try:
                    conn, _peer = srv.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()


def tls_handshake(address: str, port: int = DOT_PORT, timeout: float = 3.0,
                  cafile: Path | None = None, server_hostname: str | None = None) -> dict:
    """One TLS handshake with ALPN "dot" and no SNI (unless server_hostname is given).
    Without cafile nothing is verified.  Returns version, alpn and the leaf certificate (DER)."""
    import ssl
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.check_hostname = server_hostname is not None
    ctx.set_alpn_protocols(["dot"])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return {"version": tls.version(), "alpn": tls.selected_alpn_protocol(),
                    "cert_der": tls.getpeercert(binary_form=True)}


def silent_check(address: str, port: int = DOT_PORT, wait: float = 0.3) -> bool:
    """True if address:port accepts a TCP connection and sends nothing within `wait` s."""
    try:
        with socket.create_connection((address, port), timeout=2) as s:
            s.sendall(b"\x16\x03\x01\x00\x00")
            s.settimeout(wait)
            try:
                s.recv(1)  # data or EOF: not silent
                return False
            except socket.timeout:
                return True
    except OSError:
        return False


def refused_check(address: str, port: int = DOT_PORT) -> bool:
    """True if a TCP connection to address:port is refused (RST)."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- UDP 853 behaviours (DoQ)

DOQ_SERVER = LAB_DIR / "doq_server.py"


def silent_udp_listener(address: str, port: int) -> None:
    """Bind UDP address:port, read and discard every datagram, never send one.  Runs until killed."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((address, port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"silent UDP listener on {address}:{port}", flush=True)
    n = 0
    while True:
        s.recvfrom(65536)
        n += 1
        if n in (1, 10, 100) or n % 1000 == 0:
            print(f"{n} datagrams swallowed", flush=True)


def udp_bound(address: str, port: int) -> bool:
    """True if some socket holds UDP address:port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, port))
            return False
        except OSError as e:
            return e.errno == errno.EADDRINUSE


def _udp_probe(address: str, port: int, wait: float) -> str:
    """Send one QUIC-Initial-looking datagram (long header, 1200 octets) to address:port.
    Returns "refused" (ICMP port unreachable), "answered" or "silent"."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((address, port))
        s.settimeout(wait)
        try:
            s.send(b"\xc0\x00\x00\x00\x01" + os.urandom(1195))
            s.recv(65536)
            return "answered"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "silent"


def udp_silent_check(address: str, port: int = DOT_PORT, wait: float = 0.3) -> bool:
    """True if a datagram to UDP address:port gets neither an answer nor an ICMP error."""
    return _udp_probe(address, port, wait) == "silent"


def udp_refused_check(address: str, port: int = DOT_PORT, wait: float = 1.0) -> bool:
    """True if a datagram to UDP address:port is answered by ICMP port unreachable."""
    return _udp_probe(address, port, wait) == "refused"


def doq_query(address: str, name: str, rdtype: str = "A", port: int = DOT_PORT, timeout: float = 3.0,
              cafile: Path | None = None, server_hostname: str | None = None):
    """One DoQ query with dnspython (dns.query.quic, ALPN doq); returns the dns.message.Message.
    Without cafile the certificate is not verified.  Needs aioquic + dnspython."""
    import dns.message
    import dns.query
    q = dns.message.make_query(name, rdtype)
    q.flags = 0  # RD off: these are authoritative servers
    q.id = 0
    return dns.query.quic(q, address, timeout=timeout, port=port,
                          verify=str(cafile) if cafile else False, server_hostname=server_hostname)


class Lab:
    """Start/stop the NSD instances of the lab.  Only pids from our pidfiles are touched."""

    def __init__(self, port: int | None = None, with_ipv6: bool | None = None, with_doq: bool | None = None,
                 doq_binary: str | None = None):
        self.port = lab_port() if port is None else port
        # DoQ servers: Lab/doq_server.py (aioquic, third party: the tests), or with doq_binary
        # (a `sotto` binary) `sotto doq-authority`, Sotto's own C responder: the bench, where the
        # Python server's CPU per query would be measured as the resolver's encryption cost.
        self.doq_binary = doq_binary
        self.with_ipv6 = ipv6_loopback_usable() if with_ipv6 is None else with_ipv6
        # The DoQ servers need aioquic + dnspython; without them their instances serve Do53 only.
        self.with_doq = (doq_available() or doq_binary is not None) if with_doq is None else with_doq
        self.instances = tuple(i for i in INSTANCES if self.with_ipv6 or not i.ipv6)
        self.started: dict[str, int] = {}

    # -- addresses
    def servers(self, zone: str) -> list[str]:
        zone = zone if zone.endswith(".") else zone + "."
        return [i.address for i in self.instances if i.zone == zone]

    def dot_servers(self, kind: str = "valid") -> list[str]:
        return [i.address for i in self.instances if i.dot == kind]

    def doq_servers(self, kind: str = "valid") -> list[str]:
        return [i.address for i in self.instances if i.doq == kind]

    @property
    def ca_file(self) -> Path:
        return CA_FILE

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
            pid = read_pidfile(inst.listener_pidfile)
            if pid and pid_alive(pid) and _is_listener(pid, inst):
                kill_pid(pid)
                killed.append(pid)
            inst.listener_pidfile.unlink(missing_ok=True)
            pid = read_pidfile(inst.doq_pidfile)
            if pid and pid_alive(pid) and _is_doq_process(pid, inst):
                kill_pid(pid)
                killed.append(pid)
            inst.doq_pidfile.unlink(missing_ok=True)
        return killed

    def check_prerequisites(self) -> None:
        for tool in ("nsd", "nsd-control", "dig"):
            if not _which(tool):
                raise LabError(f"{tool} not found on PATH (apt-get install nsd dnsutils)")
        if any(i.dot or i.doq_server for i in self.instances) and not _which("openssl"):
            raise LabError("openssl not found on PATH (apt-get install openssl): the DoT servers need certificates")
        busy = [f"{i.address}:{self.port}" for i in self.instances if not port_free(i.address, self.port)]
        # 853 must be free where the lab listens (DoT, silent) and where it must be refused.
        busy += [f"{i.address}:{DOT_PORT}" for i in self.instances
                 if not i.ipv6 and not port_free(i.address, DOT_PORT)]
        if busy:
            raise LabError("lab addresses busy (another DNS server running? e.g. systemctl stop unbound nsd): "
                           + ", ".join(busy))

    def start(self) -> None:
        # One retry when a port is taken between the check and the bind: a server of a run that
        # just ended (or was killed) may still be exiting, or an orphan of it still starting.
        for attempt in range(2):
            try:
                self._start_once()
                return
            except LabError as e:
                if attempt == 1 or not ("Address already in use" in str(e) or "lab addresses busy" in str(e)):
                    raise
                time.sleep(2)

    def _start_once(self) -> None:
        self.cleanup_stale()
        self.check_prerequisites()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        try:
            make_pki(self.instances)
            # UDP 853 first: where NSD also serves DoT, the DoQ server must hold UDP 853 (with
            # SO_REUSEPORT and a BPF program steering every datagram to it) before NSD binds its
            # plain-DNS socket there.
            for inst in self.instances:
                if inst.doq == "silent" or (inst.doq_server and self.with_doq):
                    self._start_udp853(inst)
            for inst in self.instances:
                if inst.doq == "silent" or (inst.doq_server and self.with_doq):
                    self._wait_udp853_bound(inst)
            for inst in self.instances:
                self._start_one(inst)
                if inst.dot == "silent":
                    self._start_listener(inst)
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

    def _start_listener(self, inst: Instance) -> None:
        log = open(inst.run_dir / "silent853.log", "w")
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "silent-listener",
                                 inst.address, str(DOT_PORT)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        inst.listener_pidfile.write_text(f"{proc.pid}\n")
        self.started[inst.name + "/853"] = proc.pid

    def _start_udp853(self, inst: Instance) -> None:
        inst.run_dir.mkdir(parents=True, exist_ok=True)
        if inst.doq == "silent":
            cmd = [sys.executable, str(Path(__file__).resolve()), "silent-udp-listener", inst.address, str(DOT_PORT)]
        elif self.doq_binary is not None:
            # Answers every name normally: the misbehaviours (reset*/badid*/badlen* names on
            # badquic.test) are the Python server's only; the bench's names never start so.
            cmd = [self.doq_binary, "doq-authority", "--address", inst.address, "--port", str(DOT_PORT),
                   "--zone", inst.zone, "--zonefile", str(ZONES_DIR / inst.zonefile),
                   "--cert", str(inst.tls_pem), "--key", str(inst.tls_key)]
            if inst.nsd_tls:
                cmd.append("--reuseport")
        else:
            cmd = [sys.executable, str(DOQ_SERVER), "--address", inst.address, "--port", str(DOT_PORT),
                   "--zone", inst.zone, "--zonefile", str(ZONES_DIR / inst.zonefile),
                   "--cert", str(inst.tls_pem), "--key", str(inst.tls_key)]
            if inst.doq == "misbehave":
                cmd += ["--misbehave", "reset,bad-id,bad-length"]
            if inst.nsd_tls:
                cmd.append("--reuseport")
        log = open(inst.doq_log, "w")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        inst.doq_pidfile.write_text(f"{proc.pid}\n")
        self.started[inst.name + "/udp853"] = proc.pid

    def _wait_udp853_bound(self, inst: Instance, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if udp_bound(inst.address, DOT_PORT):
                return
            pid = read_pidfile(inst.doq_pidfile)
            if not pid or not pid_alive(pid):
                break
            time.sleep(0.05)
        raise LabError(f"UDP 853 server ({inst.doq}) for {inst.name} did not bind {inst.address}:{DOT_PORT}: "
                       f"{self._doq_log(inst)}")

    def _doq_log(self, inst: Instance) -> str:
        try:
            return inst.doq_log.read_text()[-2000:]
        except OSError:
            return ""

    def doq_behaviour(self, inst: Instance) -> str:
        """What UDP 853 of inst is expected to do: doq / doq-misbehave / silent / formerr / refused /
        absent (DoQ server not started: aioquic missing)."""
        if inst.doq_server:
            return ("doq" if inst.doq == "valid" else "doq-misbehave") if self.with_doq else "absent"
        if inst.doq == "silent":
            return "silent"
        return "formerr" if inst.nsd_tls else "refused"

    def doq_ready(self, inst: Instance) -> bool:
        """The UDP 853 behaviour of inst is in place (DoQ answers / silent / refused)."""
        if inst.ipv6:
            return True
        kind = self.doq_behaviour(inst)
        try:
            if kind in ("doq", "doq-misbehave"):
                if self.doq_binary is not None and not doq_available():
                    return udp_bound(inst.address, DOT_PORT)  # no DoQ client here to ask it
                r = doq_query(inst.address, inst.zone, "SOA", timeout=1.0)
                return r.rcode() == 0 and r.id == 0 and bool(r.answer)
            if kind == "silent":
                return udp_silent_check(inst.address)
            if kind == "refused":
                return udp_refused_check(inst.address)
        except Exception:  # noqa: BLE001 -- dnspython raises many kinds while the server starts
            return False
        return True  # formerr (NSD's own socket) / absent: nothing of ours to check

    def dot_ready(self, inst: Instance) -> bool:
        """The 853 behaviour of inst is in place (TLS handshake / silent / refused)."""
        if inst.ipv6:
            return True
        if inst.nsd_tls:
            try:
                return tls_handshake(inst.address, timeout=1.0)["alpn"] in ("dot", None)
            except OSError:
                return False
        if inst.dot == "silent":
            return silent_check(inst.address)
        return refused_check(inst.address)

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
            if self.answers(inst) and self.dot_ready(inst) and self.doq_ready(inst):
                return
            if inst.doq == "silent" or (inst.doq_server and self.with_doq):
                dpid = read_pidfile(inst.doq_pidfile)
                if not dpid or not pid_alive(dpid):
                    raise LabError(f"UDP 853 server ({inst.doq}) for {inst.name} died: {self._doq_log(inst)}")
            if inst.dot == "silent":
                lpid = read_pidfile(inst.listener_pidfile)
                if not lpid or not pid_alive(lpid):
                    raise LabError(f"silent 853 listener for {inst.name} died: "
                                   f"{(inst.run_dir / 'silent853.log').read_text()[-2000:]}")
            pid = read_pidfile(inst.pidfile)
            if not pid or not pid_alive(pid):
                raise LabError(f"nsd {inst.name} died: {self._log(inst)}")
            time.sleep(0.1)
        raise LabError(f"nsd {inst.name} on {inst.address} does not answer SOA {inst.zone}"
                       f" (or its 853 behaviour TCP '{inst.dot}' / UDP '{self.doq_behaviour(inst)}'"
                       f" is not in place) {self._doq_log(inst)}")

    def stop(self) -> None:
        """Stop exactly the pids in our pidfiles (those we started), then wait
        until the NSD children forked from them are gone too."""
        for inst in INSTANCES:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid) and str(inst.conf_path) in pid_cmdline(pid):
                kill_pid(pid)
            inst.pidfile.unlink(missing_ok=True)
            self.started.pop(inst.name, None)
            pid = read_pidfile(inst.listener_pidfile)
            if pid and pid_alive(pid) and _is_listener(pid, inst):
                kill_pid(pid)
            inst.listener_pidfile.unlink(missing_ok=True)
            self.started.pop(inst.name + "/853", None)
            pid = read_pidfile(inst.doq_pidfile)
            if pid and pid_alive(pid) and _is_doq_process(pid, inst):
                kill_pid(pid)
            inst.doq_pidfile.unlink(missing_ok=True)
            self.started.pop(inst.name + "/udp853", None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.05)

    @staticmethod
    def leftover_pids() -> list[int]:
        """Processes (any NSD child) still running with one of our config files,
        silent 853 listeners started from this lab.py, and our DoQ servers."""
        confs = [str(i.conf_path) for i in INSTANCES]
        me = str(Path(__file__).resolve())
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cmd = pid_cmdline(int(entry))
                ours = (cmd.startswith("nsd ") and any(c in cmd for c in confs)) or \
                       (f"{me} silent-listener " in cmd) or (f"{me} silent-udp-listener " in cmd) or \
                       (f"{DOQ_SERVER} --address " in cmd)
                if ours and pid_alive(int(entry)):
                    out.append(int(entry))
        return out

    def restart_stopped(self, insts) -> None:
        """Starts again those of `insts` whose NSD is not running (killed by a test) and waits
        until they answer."""
        running = self.running()
        for inst in insts:
            if inst.name not in running:
                self._start_one(inst)
                self.wait_ready(inst)

    def running(self) -> dict[str, int]:
        """name -> pid of the running NSD instances (silent listeners: see running_listeners)."""
        out = {}
        for inst in INSTANCES:
            pid = read_pidfile(inst.pidfile)
            if pid and pid_alive(pid) and str(inst.conf_path) in pid_cmdline(pid):
                out[inst.name] = pid
        return out

    def running_udp853(self) -> dict[str, int]:
        """name -> pid of the running DoQ servers and silent UDP 853 listeners."""
        out = {}
        for inst in INSTANCES:
            pid = read_pidfile(inst.doq_pidfile)
            if pid and pid_alive(pid) and _is_doq_process(pid, inst):
                out[inst.name] = pid
        return out

    def running_listeners(self) -> dict[str, int]:
        out = {}
        for inst in INSTANCES:
            pid = read_pidfile(inst.listener_pidfile)
            if pid and pid_alive(pid) and _is_listener(pid, inst):
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


def _is_listener(pid: int, inst: Instance) -> bool:
    return f"{Path(__file__).resolve()} silent-listener {inst.address} " in pid_cmdline(pid) + " "


def _is_doq_process(pid: int, inst: Instance) -> bool:
    cmd = pid_cmdline(pid) + " "
    return (f"{DOQ_SERVER} --address {inst.address} " in cmd
            or f" doq-authority --address {inst.address} " in cmd
            or f"{Path(__file__).resolve()} silent-udp-listener {inst.address} " in cmd)


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
        if not lab.with_doq:
            print("warning: aioquic/dnspython not importable by this python: no DoQ servers "
                  f"({sys.executable} -m pip install aioquic dnspython)", file=sys.stderr)
        try:
            lab.start()
        except LabError as e:
            print(f"lab up failed: {e}", file=sys.stderr)
            return 1
        for inst in lab.instances:
            extra = ""
            if inst.nsd_tls:
                extra = f"  DoT:853 ({inst.dot} cert)"
            elif inst.dot == "silent":
                extra = f"  853: silent listener pid {lab.started[inst.name + '/853']}"
            elif not inst.ipv6:
                extra = "  853: refused"
            if not inst.ipv6:
                kind = lab.doq_behaviour(inst)
                pid = lab.started.get(inst.name + "/udp853")
                extra += f"  UDP853: {kind}" + (f" pid {pid}" if pid else "")
            print(f"up   {inst.name:11} {inst.address:12} {inst.zone:14} pid {lab.started[inst.name]}{extra}")
        print(f"lab CA: {CA_FILE}")
        return 0
    if cmd == "down":
        before = lab.running()
        before.update({k + "/853": v for k, v in lab.running_listeners().items()})
        before.update({k + "/udp853": v for k, v in lab.running_udp853().items()})
        lab.stop()
        for name, pid in before.items():
            print(f"down {name:11} pid {pid}")
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
            dot = ""
            if pid is not None and not inst.ipv6:
                dot_ok = lab.dot_ready(inst)
                answering = answering and dot_ok
                doq_ok = lab.doq_ready(inst)
                answering = answering and doq_ok
                dot = (f"TCP853 {inst.dot or 'refused'}: {'ok' if dot_ok else 'NOT ok'}  "
                       f"UDP853 {lab.doq_behaviour(inst)}: {'ok' if doq_ok else 'NOT ok'}")
            ok = ok and answering
            state = "answering" if answering else ("running, NOT answering" if pid else "stopped")
            print(f"{inst.name:11} {inst.address:12} {inst.zone:14} {state:22} {str(pid or ''):7} {dot}")
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
    if cmd == "doq-check":
        if len(argv) < 3:
            print("usage: lab.py doq-check ADDR [NAME [TYPE]]", file=sys.stderr)
            return 2
        try:
            r = doq_query(argv[2], argv[3] if len(argv) > 3 else "www.doq.test.",
                          argv[4] if len(argv) > 4 else "A", cafile=CA_FILE if CA_FILE.exists() else None)
        except Exception as e:  # noqa: BLE001
            print(f"DoQ query to {argv[2]}:{DOT_PORT} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(r)
        return 0
    if cmd == "silent-udp-listener":  # internal: started by Lab.start()
        silent_udp_listener(argv[2], int(argv[3]))
        return 0
    if cmd == "silent-listener":  # internal: started by Lab.start()
        silent_listener(argv[2], int(argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
