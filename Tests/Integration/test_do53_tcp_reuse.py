"""Do53 over TCP reuses one connection per server (T-12 to T-17, RFC 7766 §6.2).

A UDP answer with TC=1 sends the query again over TCP (R-37). Opening a connection for each such
query costs a round trip per query and a socket in TIME_WAIT; RFC 7766 asks clients to reuse one
connection per server, pipeline on it, and cope with the server closing it. The test starts its
own NSD (Debian) on 127.53.48.1 serving a root zone whose `*.big.` names have a TXT answer too
large for Sotto's 1232-octet EDNS buffer, so every one of them comes back truncated over UDP and
goes again over TCP; a capture on lo counts the TCP connections Sotto opens to NSD.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from harness import REPO, Sotto, ctl, require, sotto_path, stop_process, wait_until
from own_servers import nsd_root, root_hints

ADDRESS = "127.53.48.1"
# Six strings of 250 octets: about 1.5 KB of answer, over the 1232 octets Sotto advertises.
STRINGS = [chr(ord("a") + i) * 250 for i in range(6)]
BIG_TXT = "*.big.  IN TXT " + " ".join(f'"{s}"' for s in STRINGS) + "\n"


@contextmanager
def own_nsd(tmp_path: Path, tcp_timeout: int | None = None):
    require(shutil.which("nsd") is not None, "nsd not installed (apt-get install nsd)")
    conf = nsd_root(tmp_path, ADDRESS, dot=False, tcp_timeout=tcp_timeout)
    with open(tmp_path / "root.zone", "a") as zone:
        zone.write(BIG_TXT)
    out = open(tmp_path / "nsd.log", "w")
    proc = subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    try:
        wait_until("NSD answering", lambda: _answers(), timeout=15)
        yield proc
    finally:
        stop_process(proc)


def _answers() -> bool:
    try:
        return dns.query.udp(dns.message.make_query("ns.", "A"), ADDRESS, timeout=0.5).rcode() == 0
    except Exception:
        return False


def ask_txt(port: int, name: str) -> None:
    # Over TCP: the answer is larger than Sotto's own UDP answers to its clients may be.
    r = dns.query.tcp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=10)
    strings = [s.decode() for rrset in r.answer for rr in rrset if rrset.rdtype == 16 for s in rr.strings]
    assert dns.rcode.to_text(r.rcode()) == "NOERROR" and strings == STRINGS, f"{name}: {r}"


def test_truncated_answers_from_one_server_share_one_tcp_connection(free_port, capture, tmp_path):
    sotto = Sotto(sotto_path())
    sock = tmp_path / "ctl.sock"
    with own_nsd(tmp_path), sotto.serve(free_port, "--no-encryption", "--control", str(sock),
                                        root_hints=str(root_hints(tmp_path, ADDRESS))) as srv:
        cap = capture()
        # One at a time, then eight at once (pipelined on the connection, answered in any order).
        for i in range(4):
            ask_txt(srv.port, f"s{i}.big.")
        errors: list[str] = []

        def one(name: str) -> None:
            try:
                ask_txt(srv.port, name)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{name}: {e}")

        threads = [threading.Thread(target=one, args=(f"p{i}.big.",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], errors
        packets = cap.stop()
        wait_until("the control socket", sock.exists, timeout=10, every=0.05)
        tcp = ctl(sotto, sock, "stats")["stats"]["upstream"]["do53TCP"]
    truncated = [p for p in cap.from_(ADDRESS, 53, "UDP") if len(p.payload) > 3 and p.payload[2] & 0x02]
    assert len(truncated) >= 12, f"the answers were not truncated over UDP ({len(truncated)} with TC=1)"
    syns = cap.syns(ADDRESS, 53)
    assert len(syns) == 1, (
        f"{len(syns)} TCP connections to the server for 12 truncated answers; one, reused, expected:\n"
        + "\n".join(str(p) for p in packets if p.proto == "TCP" and p.syn))
    # `sotto ctl stats` tells the operator the same: one connection, the other answers' queries on it.
    assert tcp["opened"] == 1 and tcp["reusedQueries"] >= 11, tcp
    assert (tcp["oneOff"], tcp["evicted"], tcp["retired"], tcp["resent"]) == (0, 0, 0, 0), tcp


def test_a_connection_the_server_closed_is_replaced_and_nothing_is_lost(free_port, capture, tmp_path):
    sotto = Sotto(sotto_path())
    # NSD closes a TCP connection idle for 3 s (room for a slow sanitizer build between the
    # first two queries).
    with own_nsd(tmp_path, tcp_timeout=3), \
            sotto.serve(free_port, "--no-encryption", root_hints=str(root_hints(tmp_path, ADDRESS))) as srv:
        cap = capture()
        ask_txt(srv.port, "c0.big.")
        ask_txt(srv.port, "c1.big.")
        # NSD closes the connection after 3 s idle; Sotto's next truncated answer opens a new one.
        time.sleep(5)
        ask_txt(srv.port, "c2.big.")
        ask_txt(srv.port, "c3.big.")
        cap.stop()
    syns = cap.syns(ADDRESS, 53)
    fins = [p for p in cap.from_(ADDRESS, 53, "TCP") if p.flags & 0x01]
    assert len(syns) == 2, f"{len(syns)} TCP connections: one before NSD's idle close, one after, expected"
    assert fins and syns[0].time < fins[0].time < syns[1].time, "NSD did not close the first connection first"


def test_a_query_cut_off_by_the_servers_close_goes_again_on_a_new_connection(free_port, tmp_path):
    """A server that closes a reused connection as a query crosses it (here: at every
    connection's second query, unanswered): the query goes again, once, on a new connection
    (T-16, RFC 7766 §6.2.4), and the client gets its answer."""
    require(os.geteuid() == 0, "binding port 53 on 127.53.48.2 needs root")
    address = "127.53.48.2"
    log = tmp_path / "root.log"
    with open(log, "w") as out:
        root = subprocess.Popen([sys.executable, str(REPO / "Lab" / "hostile_server.py"), "--root", address,
                                 "--tcp-close-second"], stdout=out, stderr=subprocess.STDOUT)
    sotto = Sotto(sotto_path())
    sock = tmp_path / "ctl.sock"
    try:
        wait_until("the root server up", lambda: "hostile servers up" in log.read_text(), timeout=15)
        with sotto.serve(free_port, "--no-encryption", "--control", str(sock),
                         root_hints=str(root_hints(tmp_path, address))) as srv:
            r = dns.query.udp(dns.message.make_query("www.", "A"), "127.0.0.1", port=srv.port, timeout=10)
            got = sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)
            assert (dns.rcode.to_text(r.rcode()), got) == ("NOERROR", ["192.0.2.1"]), f"{r}\n{srv.log()}"
            wait_until("the control socket", sock.exists, timeout=10, every=0.05)
            tcp = ctl(sotto, sock, "stats")["stats"]["upstream"]["do53TCP"]
    finally:
        stop_process(root)
    text = log.read_text()
    lines = re.findall(r"tcp conn (\d+) query (\d+) (\S+): (\w+)", text)
    closed = [(conn, name) for conn, k, name, verdict in lines if verdict == "closed"]
    assert closed, f"no query crossed a close: Sotto did not reuse a connection:\n{text}"
    for conn, name in closed:
        # The query the close cut off was sent again on a later connection (answered there, or cut
        # off again if another query went first on it: the client's NOERROR above says it got
        # through).
        again = [c for c, k, n, v in lines if n == name and int(c) > int(conn)]
        assert again, f"{name}, cut off on connection {conn}, was not sent again:\n{text}"
    # Each query a close cut off is counted as sent again, each connection as opened.
    assert tcp["resent"] == len(closed), (tcp, closed)
    assert tcp["opened"] == len({c for c, *_ in lines}), (tcp, text)
