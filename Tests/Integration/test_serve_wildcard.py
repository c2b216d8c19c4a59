"""`sotto serve` bound to a wildcard address answers from the address each query was sent to.

A socket bound to 0.0.0.0 or :: that sends with sendto gets its source address from the route
to the client. A client that asked another of the host's addresses then gets its answer from a
stranger and drops it (dig: "reply from unexpected source"), so a resolver listening on every
address of a multihomed host would answer nobody but those who asked its primary address. Sotto
reads each datagram's destination (IP_PKTINFO, IPV6_PKTINFO) and answers from it, on the full
path and on the packet cache's replays alike; the DoQ listener likewise for every datagram of a
connection.

The test runs in a network namespace it creates and removes, with nothing but its loopback
interface: Sotto's wildcard sockets there reach nothing outside it. Inside: a root server
(`Lab/hostile_server.py --root`, dnspython) on 127.0.0.53, a second IPv6 address on lo, and a
client bound to 127.0.0.1 (::1) that asks 127.0.0.2 (fd00:53::2), where the route back would
pick 127.0.0.1 (::1) as the source.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import require

REPO = Path(__file__).resolve().parents[2]
ROOT = "127.0.0.53"
V4_PORT, V6_PORT, QUIC4_PORT, QUIC6_PORT = 5300, 5301, 5302, 5303
# Runs inside the namespace: for each (address to bind, address to ask, another address of the
# host, port), one DoQ connection (dnspython on aioquic, whose UDP socket is connected: the kernel
# drops a datagram from another address) with two queries; prints the rcode and A records of each,
# or the error, and what a packet socket on lo saw: every datagram the DoQ ports sent a client from
# another address than the one that client asked ("strays"). The second query's name is new and
# the root holds its answer back 150 ms (the --impair-file, argv[2]); once that query is seen on
# the wire, the client's own socket sends the other address a datagram naming the connection (a
# short header with the server's connection ID, then junk), as someone spoofing the client's
# address could. "spoofed" says per client whether the spoof was seen and a datagram of the
# server's came after it (else the check tested nothing).
DOQ_CLIENT = r"""
import json, os, socket, sys, threading, time
import dns.message, dns.query, dns.quic, dns.rcode
asks, impair = json.loads(sys.argv[1]), sys.argv[2]
ports = {port for _, _, _, port in asks}
seen, stop = [], threading.Event()
cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.ntohs(0x0003))
cap.bind(("lo", 0))
cap.settimeout(0.1)
def capture():
    while not stop.is_set():
        try:
            d, where = cap.recvfrom(65535)
        except socket.timeout:
            continue
        if where[2] == socket.PACKET_OUTGOING:
            continue  # each datagram on lo is seen going out and coming in: kept once
        if d and d[0] >> 4 == 4 and d[9] == 17:
            h = (d[0] & 15) * 4
            src, dst, udp = socket.inet_ntop(socket.AF_INET, d[12:16]), socket.inet_ntop(socket.AF_INET, d[16:20]), d[h:h + 4]
        elif d and d[0] >> 4 == 6 and d[6] == 17:
            src, dst, udp = socket.inet_ntop(socket.AF_INET6, d[8:24]), socket.inet_ntop(socket.AF_INET6, d[24:40]), d[40:44]
        else:
            continue
        sport, dport = int.from_bytes(udp[:2], "big"), int.from_bytes(udp[2:4], "big")
        if sport in ports or dport in ports:
            seen.append((time.monotonic(), src, sport, dst, dport))
watcher = threading.Thread(target=capture, daemon=True)
watcher.start()
out, clients = [], []
try:
    for n, (bind, target, other, port) in enumerate(asks):
        try:
            with dns.quic.SyncQuicManager(verify_mode=False) as manager:
                conn = manager.connect(target, port, source=bind)
                r = dns.query.quic(dns.message.make_query("www.", "A"), target, port=port, timeout=4, verify=False,
                                   connection=conn)
                out.append({"target": target, "attempt": 0, "rcode": dns.rcode.to_text(r.rcode()),
                            "a": sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)})
                cport = conn._socket.getsockname()[1]
                clients.append((bind, cport, target, other, port))
                open(impair, "w").write("0 75\n")  # the root answers 150 ms late
                result, began = {}, time.monotonic()
                def ask():
                    try:
                        result["r"] = dns.query.quic(dns.message.make_query(f"held{n}.", "A"), target, port=port,
                                                     timeout=4, verify=False, connection=conn)
                    except Exception as e:
                        result["e"] = e
                t = threading.Thread(target=ask)
                t.start()
                while time.monotonic() < began + 2 and not any(
                        d[0] >= began and d[2] == cport and d[3] == target and d[4] == port for d in list(seen)):
                    time.sleep(0.002)  # until the query is on the wire: its answer is not written yet
                server_cid = conn._connection._peer_cid.cid
                conn._socket.sendto(bytes([0x40 | 0x01]) + server_cid + os.urandom(40), (other, port))
                t.join()
                open(impair, "w").write("0 0\n")
                if "e" in result:
                    raise result["e"]
                r = result["r"]
                out.append({"target": target, "attempt": 1, "rcode": dns.rcode.to_text(r.rcode()),
                            "a": sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)})
        except Exception as e:
            out.append({"target": target, "error": f"{type(e).__name__}: {e}"})
    time.sleep(0.2)
finally:
    stop.set()
    watcher.join()
strays, spoofed = set(), {}
for bind, cport, target, other, port in clients:
    to_client = [d for d in seen if d[2] == port and d[4] == cport and d[3] == bind]
    strays |= {d[1:] for d in to_client if d[1] != target}
    spoofs = [d[0] for d in seen if d[2] == cport and d[4] == port and d[3] == other]
    spoofed[target] = bool(spoofs) and any(d[0] > spoofs[0] for d in to_client)
print(json.dumps({"answers": out, "strays": sorted(strays), "spoofed": spoofed,
                  "to_clients": sum(1 for d in seen for b, c, _, _, p in clients if d[2] == p and d[4] == c)}))
"""

# Runs inside the namespace: asks each (address, port) twice (the second answer replays the packet
# cache) from a socket bound to the loopback address the route back would choose, and prints the
# source address of every answer with its rcode and A records.
CLIENT = r"""
import json, socket, sys, time
import dns.message, dns.rcode
out = []
for family, bind, target, port in json.loads(sys.argv[1]):
    for attempt in range(2):
        if attempt:
            time.sleep(0.3)  # the packet cache learns the answer just after sending it
        s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, 0))
        s.settimeout(3)
        q = dns.message.make_query("www.", "A")
        s.sendto(q.to_wire(), (target, port))
        try:
            data, source = s.recvfrom(4096)
        except socket.timeout:
            out.append({"target": target, "attempt": attempt, "source": None})
            continue
        r = dns.message.from_wire(data)
        out.append({"target": target, "attempt": attempt, "source": source[0], "rcode": dns.rcode.to_text(r.rcode()),
                    "a": sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)})
        s.close()
print(json.dumps(out))
"""


class Namespace:
    def __init__(self, tmp: Path):
        self.name = f"sotto-wild-{os.getpid() % 100000}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True, text=True,
                              timeout=timeout)

    def sh(self, *args: str) -> None:
        r = subprocess.run(args, capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, f"{' '.join(args)}: {r.stderr.strip()}"

    def up(self) -> None:
        self.sh("ip", "netns", "add", self.name)
        self.sh("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        self.sh("ip", "netns", "exec", self.name, "ip", "-6", "addr", "add", "fd00:53::2/128", "dev", "lo", "nodad")

    def start(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *args], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def down(self) -> None:
        for p in self.procs:
            self.stop(p)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)


@contextmanager
def running(ns: Namespace):
    """`ns` up for the block (root and `ip` required), then down; fails if it was left behind."""
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("ip") is not None, "ip not installed (apt-get install iproute2)")
    try:
        ns.up()
        yield ns
    finally:
        ns.down()
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert ns.name not in [line.split()[0] for line in r.stdout.splitlines() if line.strip()], (
        f"namespace {ns.name} left behind")


@pytest.fixture
def namespace(tmp_path):
    with running(Namespace(tmp_path)) as ns:
        yield ns


def wait_for_answer(ns: Namespace, target: str, port: int, proc: subprocess.Popen, log: Path) -> None:
    """Until `sotto serve` answers at all on (target, port), whatever the source address."""
    probe = ("import socket, dns.message, sys; s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else "
             "socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3); "
             "s.sendto(dns.message.make_query('localhost.', 'A').to_wire(), (sys.argv[1], int(sys.argv[2]))); "
             "s.recvfrom(4096)")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sotto serve exited {proc.returncode}:\n{log.read_text()}"
        if ns.run(sys.executable, "-c", probe, target, str(port)).returncode == 0:
            return
        time.sleep(0.2)
    pytest.fail(f"sotto serve never answered on {target}:{port}:\n{log.read_text()}")


def test_wildcard_listener_answers_from_the_address_asked(sotto, namespace, tmp_path):
    hints = tmp_path / "root.hints"
    hints.write_text(f".  3600000 NS ns1.\nns1. 3600000 A {ROOT}\n")
    impair = tmp_path / "impair"  # the root's answer delay, set by the DoQ client
    impair.write_text("0 0\n")
    root = namespace.start(sys.executable, str(REPO / "Lab" / "hostile_server.py"), "--root", ROOT,
                           "--impair-file", str(impair), log="root.log")
    log = tmp_path / "sotto.log"
    serve = namespace.start(
        str(sotto.path), "serve", "--listen", f"0.0.0.0:{V4_PORT}", "--listen", f"[::]:{V6_PORT}",
        "--listen-quic", f"0.0.0.0:{QUIC4_PORT}", "--listen-quic", f"[::]:{QUIC6_PORT}", "--root-hints", str(hints), "--allow-loopback", "--no-encryption", "--allow", "0.0.0.0/0",
        "--allow", "::/0", log="sotto.log")
    wait_for_answer(namespace, "127.0.0.1", V4_PORT, serve, log)
    wait_for_answer(namespace, "::1", V6_PORT, serve, log)
    assert root.poll() is None, (tmp_path / "root.log").read_text()
    asks = [(4, "127.0.0.1", "127.0.0.2", V4_PORT),
            (6, "::1", "fd00:53::2", V6_PORT),
            (4, "127.0.0.1", "127.0.0.3", V6_PORT)]  # IPv4 on the dual-stack IPv6 socket
    r = namespace.run(sys.executable, "-c", CLIENT, json.dumps(asks), timeout=60)
    assert r.returncode == 0, r.stderr
    answers = json.loads(r.stdout)
    assert len(answers) == 2 * len(asks), answers
    for a in answers:
        assert a["source"] == a["target"], (
            f"answer to a query for {a['target']} (attempt {a['attempt']}: 0 full path, 1 packet cache) "
            f"came from {a['source']}:\n{answers}\n{log.read_text()}")
        assert a["rcode"] == "NOERROR" and a["a"] == ["192.0.2.1"], a
    # DoQ too: every datagram of the handshake and of the answers comes from the address asked,
    # whatever else reaches the connection: a datagram naming the connection, sent to another
    # address while an answer is held back, leaves the source of that answer alone.
    quic_asks = [("127.0.0.1", "127.0.0.2", "127.0.0.3", QUIC4_PORT),
                 ("::1", "fd00:53::2", "::1", QUIC6_PORT),
                 ("127.0.0.1", "127.0.0.3", "127.0.0.2", QUIC6_PORT)]  # IPv4 on the dual-stack IPv6 socket
    r = namespace.run(sys.executable, "-c", DOQ_CLIENT, json.dumps(quic_asks), str(impair), timeout=90)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    answers = result["answers"]
    assert [a.get("error") for a in answers if "error" in a] == [], f"{answers}\n{log.read_text()}"
    assert len(answers) == 2 * len(quic_asks), answers
    assert result["to_clients"] >= 4 * len(quic_asks), f"the capture saw too little: {result}"
    assert result["strays"] == [], f"DoQ datagrams from another address than the one asked: {result['strays']}"
    assert result["spoofed"] == {t: True for _, t, _, _ in quic_asks}, (
        f"a spoofed datagram was not seen, or nothing of the server's came after it: {result['spoofed']}")
    for a in answers:
        if a["attempt"] == 1:  # the held name: NXDOMAIN from the root
            assert a["rcode"] == "NXDOMAIN", a
        else:
            assert a["rcode"] == "NOERROR" and a["a"] == ["192.0.2.1"], a
