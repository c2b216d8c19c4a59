"""RFC 7828 edns-tcp-keepalive on DoT, against BIND 9.18 (Debian's `bind9`), checked on the wire.

NSD 4.6 ignores the option; BIND answers a query that carries it with its
`tcp-advertised-timeout` and closes an idle connection after `tcp-keepalive-timeout`
(by default both 30 s, which is also Sotto's own idle timeout). Here BIND is the
root server on 127.0.0.1 (Do53 and DoT on free ports) and holds the test names
itself; Sotto is told those ports with --do53-port/--encrypted-port.

Who closes a TLS connection first shows in the capture: the side whose FIN comes
first. Sotto must close an idle connection before the server does (T-17, T-21),
and after a TIMEOUT of 0 close it as soon as its answers are in (T-21). The same
holds for Do53 over TCP (a truncated answer's retry on a pooled connection).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from capture import Capture, Packet
from harness import ctl, dig_query, labmod, require, scaled, wait_until

FIN = 0x01
NAMES = ["h1.ka.", "h2.ka.", "h3.ka."]
# About 1.5 KB of TXT: over the 1232 octets Sotto advertises, so truncated over UDP.
BIG_STRINGS = [chr(ord("a") + i) * 250 for i in range(6)]
BIG_TXT = "big.ka. TXT " + " ".join(f'"{s}"' for s in BIG_STRINGS) + "\n"


def named_binary() -> str | None:
    return shutil.which("named") or next((p for p in ("/usr/sbin/named",) if os.access(p, os.X_OK)), None)


class Bind:
    """One BIND 9.18 `named` on 127.0.0.1: Do53 and DoT on free ports, primary for the root zone."""

    def __init__(self, directory: Path, advertised: int, keepalive: int, extra: str = ""):
        self.dir = directory
        self.extra = extra  # more records for the root zone
        self.advertised = advertised  # tcp-advertised-timeout, units of 100 ms
        self.keepalive = keepalive  # tcp-keepalive-timeout: when BIND closes an idle connection
        self.do53 = labmod.free_port("127.0.0.1")
        self.tls = labmod.free_port("127.0.0.1")
        while self.tls == self.do53:
            self.tls = labmod.free_port("127.0.0.1")
        self.proc: subprocess.Popen | None = None

    def answer(self, name: str) -> str:
        return f"192.0.2.{10 + NAMES.index(name)}" if name in NAMES else "192.0.2.1"

    def start(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=a.root-servers.ka", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem")], check=True, capture_output=True)
        records = "\n".join(f"{n} A {self.answer(n)}" for n in NAMES)
        (d / "root.zone").write_text(
            "$ORIGIN .\n$TTL 300\n"
            "@ SOA a.root-servers.ka. hostmaster.ka. 1 3600 900 604800 300\n"
            "@ NS a.root-servers.ka.\n"
            "a.root-servers.ka. A 127.0.0.1\n"
            f"www.ka. A {self.answer('www.ka.')}\n{records}\n{self.extra}")
        (d / "root.hints").write_text(
            ".  3600000 NS a.root-servers.ka.\na.root-servers.ka.  3600000 A 127.0.0.1\n")
        (d / "named.conf").write_text(f"""
options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port {self.do53} {{ 127.0.0.1; }};
  listen-on port {self.tls} tls lab {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  tcp-advertised-timeout {self.advertised};
  tcp-keepalive-timeout {self.keepalive};
  tcp-idle-timeout 300;
  tcp-initial-timeout 300;
}};
controls {{ }};
tls lab {{ key-file "{d}/key.pem"; cert-file "{d}/cert.pem"; }};
zone "." {{ type primary; file "{d}/root.zone"; }};
""")
        self.log = open(d / "named.log", "w+")
        self.proc = subprocess.Popen([named_binary() or "named", "-g", "-c", str(d / "named.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"named exited with {self.proc.returncode}:\n{self.text()}", pytrace=False)
            if not labmod.port_free("127.0.0.1", self.tls):
                r = dig_query("127.0.0.1", self.do53, "www.ka.", "A", "+norec", timeout=3)
                if r.status == "NOERROR" and r.answer:
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"named did not serve on 127.0.0.1:{self.do53}/{self.tls} in time:\n{self.text()}", pytrace=False)

    def text(self) -> str:
        self.log.flush()
        return (self.dir / "named.log").read_text()[-3000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bind_directory(tmp_path: Path, n: int) -> Path:
    """Where one BIND keeps its files. Debian's AppArmor profile for named (enforced where
    AppArmor runs) lets it read and write under /var/cache/bind, not under /tmp."""
    cache = Path("/var/cache/bind")
    if cache.is_dir() and os.access(cache, os.W_OK):
        return cache / f"sotto-test-{os.getpid()}-{tmp_path.name}-{n}"
    return tmp_path / f"bind{n}"


@pytest.fixture
def bind(tmp_path):
    """Factory: bind(advertised, keepalive) starts BIND; every one started is stopped and its
    directory removed at the end."""
    require(named_binary() is not None, "BIND's named not installed (apt-get install bind9)")
    require(shutil.which("openssl") is not None, "openssl not installed")
    started: list[Bind] = []

    def start(advertised: int, keepalive: int, extra: str = "") -> Bind:
        b = Bind(bind_directory(tmp_path, len(started)), advertised, keepalive, extra)
        started.append(b)
        b.start()
        return b

    yield start
    for b in started:
        b.stop()
        if b.dir.is_relative_to("/var/cache/bind"):
            shutil.rmtree(b.dir, ignore_errors=True)


@pytest.fixture
def wire(tmp_path):
    """Factory: wire(bind) captures BIND's Do53 and DoT ports on lo."""
    require(Capture.tcpdump() is not None, "tcpdump not installed (apt-get install tcpdump)")
    require(os.geteuid() == 0, "capturing on lo needs root")
    caps: list[Capture] = []

    def start(b: Bind) -> Capture:
        cap = Capture(tmp_path / f"bind{b.tls}.pcap",
                      bpf=f"host 127.0.0.1 and (port {b.tls} or port {b.do53})").start()
        caps.append(cap)
        return cap

    yield start
    for c in caps:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()


def connections(packets: list[Packet], port: int) -> dict[int, list[Packet]]:
    """The TCP packets of each connection to `port`, by the client's port."""
    out: dict[int, list[Packet]] = {}
    for p in packets:
        if p.proto == "TCP" and (p.dport == port or p.sport == port):
            out.setdefault(p.sport if p.dport == port else p.dport, []).append(p)
    return out


def first_fin(conn: list[Packet], port: int) -> tuple[str, Packet] | None:
    """Who sent the connection's first FIN ('client' or 'server'), and that packet."""
    for p in conn:
        if p.flags & FIN:
            return ("client" if p.dport == port else "server", p)
    return None


def app_data(conn: list[Packet], port: int, to_server: bool) -> list[Packet]:
    return [p for p in conn if (p.dport == port) == to_server and 23 in p.tls_record_types]


def queries(conn: list[Packet], port: int) -> list[Packet]:
    """Client packets with a DNS query in them. In TLS 1.3 the client's Finished and its
    close_notify are application-data records too, but short ones: a query is padded to 128
    octets (T-40), so its record is at least 128 + 2 (length) + 1 (type) + 16 (tag) long."""
    out = []
    for p in conn:
        if p.dport != port:
            continue
        b, i = p.payload, 0
        while i + 5 <= len(b):
            kind, length = b[i], b[i + 3] << 8 | b[i + 4]
            if kind == 23 and length >= 147:
                out.append(p)
                break
            i += 5 + length
    return out


def trace(conns: dict[int, list[Packet]]) -> str:
    return "\n".join(f"{c}: " + " ".join(f"{p.time % 100:.3f}{'>' if p.sport == c else '<'}{p.flag_str}"
                                         f"{'[app]' if 23 in p.tls_record_types else ''}" for p in ps)
                     for c, ps in conns.items())


def serve_args(b: Bind, state: Path) -> list[str]:
    return ["--do53-port", str(b.do53), "--encrypted-port", str(b.tls), "--no-doq", "--state-file", str(state)]


def do53_after(packets: list[Packet], b: Bind, mark: float) -> list[Packet]:
    """Queries to BIND's Do53 port (UDP or TCP) sent at or after `mark`."""
    return [p for p in packets if p.dport == b.do53 and p.time >= mark and (p.proto == "UDP" or p.syn)]


def check_answer(srv, b: Bind, name: str) -> None:
    r = srv.dig(name, "A")
    assert r.status == "NOERROR" and {rr[2] for rr in r.answer} == {b.answer(name)}, r.raw


def dot_phase(sotto, sock: Path) -> str | None:
    """BIND's DoT phase as `sotto ctl servers` shows it (None before the server is known)."""
    servers = ctl(sotto, sock, "servers")["servers"]
    return next((s["dot"]["phase"] for s in servers if s["address"] == "127.0.0.1"), None)


def dot_state(sotto, state: Path) -> dict:
    r = sotto.run("state", "show", "--state-file", str(state), "--json", timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    servers = [s for s in json.loads(r.stdout)["servers"] if s["address"] == "127.0.0.1"]
    assert servers, r.stdout
    return servers[0]


def test_idle_dot_session_closes_before_bind_s_keepalive(bind, wire, sotto, free_port, tmp_path):
    """BIND advertises 2.0 s and closes after 4.0 s: Sotto (idle timeout 30 s) closes the idle
    connection itself, first, and the next query reconnects over DoT, not Do53."""
    b = bind(advertised=20, keepalive=40)
    state = tmp_path / "state.json"
    cap = wire(b)
    sock = tmp_path / "ctl.sock"
    with sotto.serve(free_port, *serve_args(b, state), "--control", str(sock),
                     root_hints=str(b.dir / "root.hints")) as srv:
        check_answer(srv, b, "www.ka.")  # Do53, with a DoT probe
        # The probe's answer already says 2.0 s, so its connection closes 1.8 s after it: h1 goes
        # inside that, once the probe has succeeded (a fixed wait lost that race under a loaded CI).
        wait_until("the DoT probe's success", lambda: dot_phase(sotto, sock) in ("established", "good-idle"),
                   timeout=10, every=0.05)
        mark = time.time()
        check_answer(srv, b, "h1.ka.")  # over DoT: BIND's answer says 2.0 s
        time.sleep(3.0)  # past Sotto's 1.8 s, short of BIND's 4.0 s
        again = time.time()
        check_answer(srv, b, "h2.ka.")
        srv.signal(signal.SIGTERM)
    packets = cap.stop()
    conns = connections(packets, b.tls)
    used = {c: ps for c, ps in conns.items() if any(p.time >= mark for p in queries(ps, b.tls))}
    assert len(used) == 2, f"expected h1 and h2 on two DoT connections:\n{trace(conns)}"
    first, second = sorted(used.values(), key=lambda ps: ps[0].time)
    fin = first_fin(first, b.tls)
    assert fin is not None and fin[0] == "client", f"BIND closed the idle connection before Sotto:\n{trace(conns)}"
    # Only what came before Sotto's FIN: BIND answers the close_notify with its own, and the
    # kernel may answer that with a RST, as the socket is closed by then.
    before_fin = [p for p in first if p.time < fin[1].time]
    last_answer = app_data(before_fin, b.tls, False)[-1].time
    assert last_answer + 1.0 <= fin[1].time < again, (
        f"Sotto's FIN {fin[1].time - last_answer:.2f} s after the answer: not idle first, or after h2:\n"
        f"{trace(conns)}")
    assert not any(p.rst for p in before_fin), f"the connection was reset before the idle close:\n{trace(conns)}"
    assert second[0].syn and second[0].time >= again, f"h2 did not open a new connection:\n{trace(conns)}"
    st = dot_state(sotto, state)
    assert st["dot"]["status"] == "success" and not st["dot"]["failures"], st["dot"]
    assert st["queries"].get("DoT", 0) >= 2, st["queries"]
    assert st["dot"]["keepalive"] == 2.0, f"the state does not show BIND's keepalive: {st['dot']}"
    assert not do53_after(packets, b, mark), "queries went to BIND's Do53 port after the probe"


def test_keepalive_of_zero_closes_each_connection_once_answered(bind, wire, sotto, free_port, tmp_path):
    """BIND advertises 0 (and would close after 4.0 s): Sotto sends no second query on a connection,
    closes each one itself right after its answer, and keeps every query on DoT."""
    b = bind(advertised=0, keepalive=40)
    state = tmp_path / "state.json"
    cap = wire(b)
    sock = tmp_path / "ctl.sock"
    with sotto.serve(free_port, *serve_args(b, state), "--control", str(sock),
                     root_hints=str(b.dir / "root.hints")) as srv:
        check_answer(srv, b, "www.ka.")  # Do53, with a DoT probe
        # Every name below goes over DoT only once the probe has succeeded and its answer, with
        # keepalive 0, has closed the probe's connection: good-idle (a handshake has taken over a
        # second under TSan, so a fixed wait would race it; "established" comes before the answer,
        # and a query sent then would ride on the probe's connection).
        wait_until("the DoT probe's success", lambda: dot_phase(sotto, sock) == "good-idle", timeout=10, every=0.05)
        mark = time.time()
        for name in NAMES:
            check_answer(srv, b, name)
        done = time.time()
        srv.signal(signal.SIGTERM)
    packets = cap.stop()
    conns = connections(packets, b.tls)
    used = {c: ps for c, ps in conns.items() if any(p.time >= mark for p in queries(ps, b.tls))}
    assert len(used) == len(NAMES), f"expected one DoT connection per query:\n{trace(conns)}"
    for c, ps in used.items():
        assert len(queries(ps, b.tls)) == 1, f"a second query went on connection {c}:\n{trace(conns)}"
        fin = first_fin(ps, b.tls)
        assert fin is not None and fin[0] == "client" and fin[1].time <= done, (
            f"connection {c} was not closed by Sotto once answered:\n{trace(conns)}")
    st = dot_state(sotto, state)
    assert st["dot"]["status"] == "success" and not st["dot"]["failures"], st["dot"]
    assert st["queries"].get("DoT", 0) >= len(NAMES), st["queries"]
    assert st["dot"]["keepalive"] == 0, f"the state does not show BIND's keepalive of 0: {st['dot']}"
    assert not do53_after(packets, b, mark), "queries went to BIND's Do53 port after the probe"


def test_do53_tcp_connection_closes_before_bind_s_keepalive(bind, wire, sotto, free_port, tmp_path):
    """Encryption off. big.ka.'s TXT answer is truncated over UDP, so it goes again over TCP on a
    pooled connection. Its query asks for edns-tcp-keepalive (T-20); BIND advertises 2.0 s and
    closes after 4.0 s: Sotto (idle time 30 s) closes the connection itself, first, about 1.8 s
    after the answer (T-17)."""
    b = bind(advertised=20, keepalive=40, extra=BIG_TXT)
    cap = wire(b)
    with sotto.serve(free_port, "--do53-port", str(b.do53), "--no-encryption",
                     root_hints=str(b.dir / "root.hints")) as srv:
        r = dns.query.tcp(dns.message.make_query("big.ka.", "TXT"), "127.0.0.1", port=srv.port, timeout=10)
        strings = [s.decode() for rrset in r.answer for rr in rrset if rrset.rdtype == 16 for s in rr.strings]
        assert dns.rcode.to_text(r.rcode()) == "NOERROR" and strings == BIG_STRINGS, r
        time.sleep(3.0)  # past Sotto's 1.8 s, short of BIND's 4.0 s
        srv.signal(signal.SIGTERM)
    packets = cap.stop()
    conns = {c: ps for c, ps in connections(packets, b.do53).items() if ps[0].proto == "TCP"}
    assert len(conns) == 1, f"expected the one TCP connection of the truncated answer:\n{trace(conns)}"
    conn = next(iter(conns.values()))
    sent = [p for p in conn if p.dport == b.do53 and p.payload_len > 0]
    assert sent, f"no query on the connection:\n{trace(conns)}"
    query = dns.message.from_wire(sent[0].payload[2:])
    assert any(o.otype == 11 and not o.to_wire() for o in query.options), (
        f"the TCP query did not ask for edns-tcp-keepalive: {query.options}")
    fin = first_fin(conn, b.do53)
    assert fin is not None and fin[0] == "client", f"BIND closed the idle connection before Sotto:\n{trace(conns)}"
    answered = [p.time for p in conn if p.sport == b.do53 and p.payload_len > 0 and p.time < fin[1].time]
    assert answered, f"no answer before the close:\n{trace(conns)}"
    idle = fin[1].time - answered[-1]
    # 1.8 s expected; at 3 s the process stops (its FIN then would say nothing about the keepalive).
    assert 1.0 <= idle < 2.7, f"Sotto closed {idle:.2f} s after the answer, not at 90% of 2.0 s:\n{trace(conns)}"
