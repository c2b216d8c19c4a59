"""DoQ reconnection against a DoQ server the test starts for itself (Lab/doq_server.py, aioquic),
next to NSD (Debian) serving the same root zone over Do53 on its address. The DoQ server logs
every handshake, every close and every query it answers.

- Connection reuse and the idle timeout (T-32, RFC 9250 §5.5.1): a QUIC server may drop an idle
  connection silently once its idle timeout passes, so a query sent on a connection the server
  has been silent on for most of that time can be lost. Sotto takes a DoQ connection for new
  queries only while the server's last packet is within three quarters of the idle timeout both
  ends agreed on; after that it closes the connection cleanly and the next query opens a new one
  (resuming with a ticket).
- Too Early (T-7, RFC 9250 §4.5): a server may refuse to answer a query that came in 0-RTT,
  with REFUSED and Extended DNS Error 26; Sotto sends the query again on the same connection,
  its handshake done, instead of taking REFUSED as the answer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from harness import REPO, Sotto, labmod, require, sotto_path, stop_process, wait_until
from own_servers import WILDCARD_ANSWER, nsd_root, root_hints, self_signed


ADDRESS = "127.53.47.1"
TOO_EARLY_ADDRESS = "127.53.47.2"
# The DoQ server's idle timeout; Sotto's own is 30 s, so 10 s is what both agree on. Sotto stops
# reusing a connection after 7.5 s of silence; the test waits 8.75 s, 1.25 s from either edge
# (slow sanitizer builds included).
IDLE = 10.0


@contextmanager
def own_doq(tmp_path: Path, address: str, *doq_args: str):
    """NSD (Do53) and Lab/doq_server.py with `doq_args` (DoQ) serving a root zone on `address`;
    yields the DoQ server's log."""
    require(shutil.which("nsd") is not None, "nsd not installed (apt-get install nsd)")
    require(labmod.doq_available(), "aioquic/dnspython not installed (pip install aioquic dnspython)")
    conf = nsd_root(tmp_path, address, dot=False)
    procs = []
    try:
        with open(tmp_path / "nsd.log", "w") as out:
            procs.append(subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT))
        key, pem = self_signed(tmp_path)
        doq_log = tmp_path / "doq.log"
        with open(doq_log, "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, str(REPO / "Lab" / "doq_server.py"), "--address", address, "--zone", ".",
                 "--zonefile", str(tmp_path / "root.zone"), "--cert", str(pem), "--key", str(key), *doq_args],
                stdout=out, stderr=subprocess.STDOUT))
        wait_until("NSD answering", lambda: _answers(address), timeout=15)
        wait_until("the DoQ server up", lambda: "DoQ server for" in doq_log.read_text(), timeout=15)
        yield doq_log
    finally:
        for p in procs:
            stop_process(p)


def _answers(address: str) -> bool:
    try:
        return dns.query.udp(dns.message.make_query("ns.", "A"), address, timeout=0.5).rcode() == 0
    except (OSError, dns.exception.DNSException):
        return False


def ask(port: int, name: str) -> None:
    r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=10)
    got = sorted(rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == 1)
    assert (dns.rcode.to_text(r.rcode()), got) == ("NOERROR", [WILDCARD_ANSWER]), f"{name}: {r}"


def handshakes(doq_log: Path) -> list[str]:
    """The `resumed` flag of every handshake the DoQ server completed, in order."""
    return re.findall(r"handshake alpn=doq resumed=(\w+)", doq_log.read_text())


def test_a_doq_connection_idle_for_most_of_its_timeout_is_replaced(free_port, tmp_path):
    sotto = Sotto(sotto_path())
    hints = root_hints(tmp_path, ADDRESS)
    with own_doq(tmp_path, ADDRESS, "--idle-timeout", str(IDLE)) as doq_log, \
            sotto.serve(free_port, "--no-dot", "--log-level", "info", root_hints=str(hints)) as srv:
        ask(srv.port, "q0.")  # Do53 (the root's priming query first), with a DoQ probe alongside
        wait_until("the probe's query over DoQ", lambda: re.search(r"stream \d+ \S+ \w+: NOERROR", doq_log.read_text()),
                   timeout=10)
        ask(srv.port, "q1.")  # well within the idle timeout: the same connection
        assert handshakes(doq_log) == ["False"], doq_log.read_text()
        time.sleep(0.875 * IDLE)  # past three quarters of it, before the server's own close
        ask(srv.port, "q2.")
        ask(srv.port, "q3.")  # right after: the new connection again
        text = doq_log.read_text()
        assert handshakes(doq_log) == ["False", "True"], f"expected one new, resumed connection:\n{text}"
        # Sotto closed the old connection itself, with DOQ_NO_ERROR (aioquic logs it once its
        # draining period is over), rather than leave it to the server's idle timeout.
        first_cid = re.search(r"handshake alpn=doq resumed=False .*cid=(\w+)", text).group(1)
        closed = wait_until("the old connection's close", lambda: re.search(
            rf"connection closed code=(\d+) reason='([^']*)' cid={first_cid}", doq_log.read_text()), timeout=5)
        assert closed.groups() == ("0", ""), doq_log.read_text()
        for name in ("q1.", "q2.", "q3."):
            assert f" {name} A: NOERROR" in text, f"{name} did not go over DoQ:\n{text}"
        assert "session-failed" not in srv.log() and "damped" not in srv.log(), srv.log()


def test_a_0rtt_query_answered_too_early_is_sent_again_after_the_handshake(free_port, tmp_path):
    sotto = Sotto(sotto_path())
    hints = root_hints(tmp_path, TOO_EARLY_ADDRESS)
    # A 1 s idle timeout: the probe's connection closes by itself, and the next query reconnects,
    # resuming with the probe's ticket and riding in 0-RTT.
    with own_doq(tmp_path, TOO_EARLY_ADDRESS, "--misbehave", "too-early", "--idle-timeout", "1") as doq_log, \
            sotto.serve(free_port, "--no-dot", "--log-level", "info", root_hints=str(hints)) as srv:
        ask(srv.port, "q0.")
        wait_until("the probe's query over DoQ", lambda: re.search(r"stream \d+ \S+ \w+: NOERROR", doq_log.read_text()),
                   timeout=10)
        wait_until("the server's idle close", lambda: "Idle timeout" in doq_log.read_text(), timeout=10)
        time.sleep(0.3)
        ask(srv.port, "q1.")
        text = doq_log.read_text()
        assert handshakes(doq_log) == ["False", "True"], text
        assert "early_data=True" in text, f"the reconnection sent no 0-RTT query:\n{text}"
        refused = text.find("q1. A: REFUSED Too Early")
        again = text.find("q1. A: NOERROR")
        assert 0 <= refused < again, f"q1. was not refused in 0-RTT, then answered:\n{text}"
        # On the same connection: no third handshake, and the server stays good.
        assert len(handshakes(doq_log)) == 2
        assert "session-failed" not in srv.log() and "damped" not in srv.log(), srv.log()
