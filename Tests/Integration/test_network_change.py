"""Our own address changes (a laptop joins another network): Sotto must not present a TLS
resumption ticket from the old network on the new one (T-6: the ticket would link the two), and
must replace its DoT sessions from the old address with new connections (T-37), without
sending the server cleartext or holding the change against it.

The test runs in a network namespace it creates and removes. In it: lo, where NSD (Debian)
serves a root zone over Do53 and DoT on 127.0.0.1 and Sotto serves clients on 127.0.0.1:5300;
and a veth pair with 10.53.0.2, the default route, which gives the source address Sotto sees
towards global addresses (a UDP connect, no packet). The test moves the default route to a
second address, 10.53.1.2, and reads what crossed lo from a tcpdump capture: each TLS
ClientHello's pre_shared_key extension (a ticket presented), who closed each connection, and
every Do53 query.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capture import parse_pcap
from harness import ctl, require, wait_until
from own_servers import WILDCARD_ANSWER, nsd_root, root_hints
import test_serve_wildcard as wildcard

NSD_ADDRESS = "127.0.0.1"
LISTEN_PORT = 5300
OLD, NEW = "10.53.0.2", "10.53.1.2"
PSK_EXTENSION = 41  # pre_shared_key (RFC 8446 §4.2.11)


# Runs inside the namespace: the queries, the route change between them, and what each got.
CLIENT = r"""
import json, socket, subprocess, sys, time
import dns.message, dns.rcode
port, new = int(sys.argv[1]), sys.argv[2]
out = {"answers": []}

def ask(name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
    try:
        r = dns.message.from_wire(s.recvfrom(4096)[0])
        a = sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)
        out["answers"].append([name, dns.rcode.to_text(r.rcode()), a])
    except socket.timeout:
        out["answers"].append([name, "timeout", []])
    s.close()

ask("q0.")        # Do53, with a DoT probe alongside
time.sleep(1.0)
ask("q1.")        # over the probe's DoT session (NSD's idle timeout is 4 s: ample margin)
time.sleep(5.5)   # NSD closes the idle session after 4 s
ask("q2.")        # a new DoT connection, resuming with the ticket the first one got
out["changed_at"] = time.time()
subprocess.run(["ip", "addr", "add", new + "/24", "dev", "va"], check=True)
subprocess.run(["ip", "route", "replace", "default", "dev", "va", "src", new], check=True)
for i in range(8):  # one a second keeps the session from NSD's idle close; Sotto looks every 5 s
    time.sleep(1)
    ask(f"p{i}.")
print(json.dumps(out))
"""


class Namespace(wildcard.Namespace):
    """test_serve_wildcard's namespace, with a veth pair whose end `va` has OLD and the default
    route instead of its address on lo."""

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.name = f"sotto-move-{os.getpid() % 100000}"

    def up(self) -> None:
        self.sh("ip", "netns", "add", self.name)
        for step in (("link", "set", "lo", "up"), ("link", "add", "va", "type", "veth", "peer", "name", "vb"),
                     ("link", "set", "va", "up"), ("link", "set", "vb", "up"), ("addr", "add", f"{OLD}/24", "dev", "va"),
                     ("route", "add", "default", "dev", "va")):
            self.sh("ip", "netns", "exec", self.name, "ip", *step)


@pytest.fixture
def moving(tmp_path):
    for tool in ("nsd", "tcpdump", "openssl"):
        require(shutil.which(tool) is not None, f"{tool} not installed")
    with wildcard.running(Namespace(tmp_path)) as ns:
        yield ns


def start_nsd(ns: Namespace, tmp: Path) -> None:
    conf = nsd_root(tmp, NSD_ADDRESS, dot=True, tcp_timeout=4)
    ns.start("nsd", "-d", "-c", str(conf), log="nsd.log")
    probe = "import dns.message, dns.query; dns.query.udp(dns.message.make_query('ns.', 'A'), '127.0.0.1', timeout=0.5)"
    wait_until("NSD answering in the namespace", lambda: ns.run(sys.executable, "-c", probe).returncode == 0,
               timeout=15)


def client_hello_extensions(payload: bytes) -> list[int] | None:
    """The extension types of a TLS ClientHello that starts this segment, else None."""
    if len(payload) < 9 or payload[0] != 22 or payload[5] != 1:
        return None
    i = 9 + 2 + 32  # record and handshake headers, legacy_version, random
    i += 1 + payload[i]  # session id
    i += 2 + struct.unpack("!H", payload[i:i + 2])[0]  # cipher suites
    i += 1 + payload[i]  # compression methods
    end = i + 2 + struct.unpack("!H", payload[i:i + 2])[0]
    i += 2
    types = []
    while i + 4 <= min(end, len(payload)):
        t, n = struct.unpack("!HH", payload[i:i + 4])
        types.append(t)
        i += 4 + n
    return types


def test_a_new_network_gets_new_sessions_and_no_old_ticket(sotto, moving, tmp_path):
    start_nsd(moving, tmp_path)
    cap = tmp_path / "lo.pcap"
    dump = moving.start("tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(cap),
                        "port 53 or port 853", log="tcpdump.log")
    wait_until("tcpdump listening", lambda: "listening on" in (tmp_path / "tcpdump.log").read_text(), timeout=10)
    hints = root_hints(tmp_path, NSD_ADDRESS)
    sock = tmp_path / "ctl.sock"
    serve = moving.start(str(sotto.path), "serve", "--listen", f"127.0.0.1:{LISTEN_PORT}", "--root-hints", str(hints),
                         "--allow-loopback", "--no-doq", "--log-level", "info", "--control", str(sock),
                         log="sotto.log")
    log = tmp_path / "sotto.log"
    wait_until("sotto serving", lambda: "listening" in log.read_text() or serve.poll() is not None, timeout=20)
    assert serve.poll() is None, log.read_text()
    r = subprocess.run(["ip", "netns", "exec", moving.name, sys.executable, "-c", CLIENT, str(LISTEN_PORT), NEW],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    time.sleep(0.3)
    moving.stop(dump)
    packets = parse_pcap(cap)

    for name, rcode, a in seen["answers"]:
        assert (rcode, a) == ("NOERROR", [WILDCARD_ANSWER]), f"{name}: {rcode} {a}\n{log.read_text()}"

    tls = [p for p in packets if p.proto == "TCP" and 853 in (p.sport, p.dport)]
    hellos = []  # (time, client port, presents a ticket)
    for p in tls:
        types = client_hello_extensions(p.payload) if p.dport == 853 else None
        if types is not None:
            hellos.append((p.time, p.sport, PSK_EXTENSION in types))
    changed = seen["changed_at"]
    before = [h for h in hellos if h[0] < changed]
    after = [h for h in hellos if h[0] >= changed]
    # Control: on one network a reconnection resumes, so tickets are there to be presented.
    assert [h[2] for h in before] == [False, True], f"ClientHellos before the change: {before}"
    assert after, f"no new DoT connection after the address changed:\n{log.read_text()}"
    assert not any(h[2] for h in after), f"a ticket from the old network was presented on the new one: {after}"

    # The session from the old address was closed by Sotto (its FIN first), not left to time out.
    old_port = before[-1][1]
    fins = [p for p in tls if p.flags & 0x01 and old_port in (p.sport, p.dport)]
    assert fins and fins[0].sport == old_port, f"the old session was not closed by Sotto: {fins}"
    assert fins[0].time >= changed

    # Known good all along: Do53 to NSD only at the start, before the probe found DoT.
    do53 = [p for p in packets if p.proto == "UDP" and p.dport == 53 and p.dst == NSD_ADDRESS]
    assert do53 and all(p.time < changed - 3 for p in do53), [(p.time - changed, p.proto) for p in do53]
    text = log.read_text()
    assert "our source address changed: 1 encrypted session(s) closed" in text, text
    upstream = ctl(sotto, sock, "stats")["stats"]["upstream"]  # a Unix socket: reachable from here
    assert upstream["addressChanges"] == 1, upstream
    assert upstream["localConnectionFailures"] == 0, upstream
