"""DoQ connection reuse and the idle timeout (T-32, RFC 9250 §5.5.1): a QUIC server may drop an
idle connection silently once its idle timeout passes, so a query sent on a connection the
server has been silent on for most of that time can be lost. Sotto takes a DoQ connection for
new queries only while the server's last packet is within three quarters of the idle timeout
both ends agreed on; after that it closes the connection cleanly and the next query opens a new
one (resuming with a ticket).

The test's own servers on 127.53.47.1: NSD (Debian) serves a root zone over Do53, and
Lab/doq_server.py (aioquic) serves it over DoQ with a 4 s idle timeout, logging every handshake,
every close and every query it answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from harness import REPO, Sotto, labmod, require, sotto_path, stop_process, wait_until
from own_servers import WILDCARD_ANSWER, nsd_root, root_hints, self_signed


ADDRESS = "127.53.47.1"
IDLE = 4.0  # the DoQ server's idle timeout; Sotto's own is 30 s, so 4 s is what both agree on


@pytest.fixture
def idle_servers(tmp_path):
    require(shutil.which("nsd") is not None, "nsd not installed (apt-get install nsd)")
    require(labmod.doq_available(), "aioquic/dnspython not installed (pip install aioquic dnspython)")
    conf = nsd_root(tmp_path, ADDRESS, dot=False)
    procs = []
    try:
        with open(tmp_path / "nsd.log", "w") as out:
            procs.append(subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT))
        key, pem = self_signed(tmp_path)
        doq_log = tmp_path / "doq.log"
        with open(doq_log, "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, str(REPO / "Lab" / "doq_server.py"), "--address", ADDRESS, "--zone", ".",
                 "--zonefile", str(tmp_path / "root.zone"), "--cert", str(pem), "--key", str(key),
                 "--idle-timeout", str(IDLE)], stdout=out, stderr=subprocess.STDOUT))
        wait_until("NSD answering", lambda: _answers(ADDRESS), timeout=15)
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


def test_a_doq_connection_idle_for_most_of_its_timeout_is_replaced(idle_servers, free_port, tmp_path):
    doq_log = idle_servers
    sotto = Sotto(sotto_path())
    hints = root_hints(tmp_path, ADDRESS)
    with sotto.serve(free_port, "--no-dot", "--log-level", "info", root_hints=str(hints)) as srv:
        handshakes = lambda: re.findall(r"handshake alpn=doq resumed=(\w+)", doq_log.read_text())  # noqa: E731
        ask(srv.port, "q0.")  # Do53 (the root's priming query first), with a DoQ probe alongside
        wait_until("the probe's query over DoQ", lambda: re.search(r"stream \d+ \S+ \w+: NOERROR", doq_log.read_text()),
                   timeout=10)
        ask(srv.port, "q1.")  # well within the idle timeout: the same connection
        assert handshakes() == ["False"], doq_log.read_text()
        time.sleep(0.875 * IDLE)  # past three quarters of it, before the server's own close
        ask(srv.port, "q2.")
        ask(srv.port, "q3.")  # right after: the new connection again
        text = doq_log.read_text()
        assert handshakes() == ["False", "True"], f"expected one new, resumed connection:\n{text}"
        # Sotto closed the old connection itself, with DOQ_NO_ERROR (aioquic logs it once its
        # draining period is over), rather than leave it to the server's idle timeout.
        first_cid = re.search(r"handshake alpn=doq resumed=False .*cid=(\w+)", text).group(1)
        closed = wait_until("the old connection's close", lambda: re.search(
            rf"connection closed code=(\d+) reason='([^']*)' cid={first_cid}", doq_log.read_text()), timeout=5)
        assert closed.groups() == ("0", ""), doq_log.read_text()
        for name in ("q1.", "q2.", "q3."):
            assert f" {name} A: NOERROR" in text, f"{name} did not go over DoQ:\n{text}"
        assert "session-failed" not in srv.log() and "damped" not in srv.log(), srv.log()
