"""`sotto doq-authority` (hidden; the bench lab's DoQ servers): a lab zone file served over DoQ,
asked by a third-party client (dnspython's DoQ over aioquic), on an ephemeral loopback port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import labmod, require, sotto_path

ZONE = labmod.ZONES_DIR / "doq.test.zone"


@pytest.fixture
def identity(tmp_path: Path) -> tuple[Path, Path]:
    require(shutil.which("openssl") is not None, "openssl not installed (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=ns1.doq.test"],
                   check=True, capture_output=True)
    return cert, key


def start(port: int, identity: tuple[Path, Path], *extra: str) -> subprocess.Popen:
    require(labmod.doq_available(), "aioquic/dnspython not installed (make pip-deps)")
    require(sotto_path().exists(), f"sotto binary missing at {sotto_path()}")
    cert, key = identity
    proc = subprocess.Popen([str(sotto_path()), "doq-authority", "--address", "127.0.0.1", "--port", str(port),
                             "--zone", "doq.test.", "--zonefile", str(ZONE), "--cert", str(cert), "--key", str(key),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # printed once the socket is bound
    assert "DoQ authority for doq.test. on 127.0.0.1" in line, line + (proc.stdout.read() if proc.poll() else "")
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    return out


def test_answers_the_lab_zone_over_doq(free_port, identity) -> None:
    proc = start(free_port, identity)
    try:
        soa = labmod.doq_query("127.0.0.1", "doq.test.", "SOA", port=free_port)
        www = labmod.doq_query("127.0.0.1", "www.doq.test.", "A", port=free_port)
        nx = labmod.doq_query("127.0.0.1", "nope.doq.test.", "A", port=free_port)
        out = labmod.doq_query("127.0.0.1", "www.example.test.", "A", port=free_port)
    finally:
        log = stop(proc)
    assert soa.rcode() == 0 and soa.id == 0 and soa.answer and soa.answer[0].rdtype == 6, soa
    assert www.rcode() == 0 and www.flags & 0x0400 and [r.to_text() for r in www.answer[0]] == ["198.51.117.10"], www
    assert nx.rcode() == 3 and nx.authority, nx
    assert out.rcode() == 5, out  # REFUSED outside the zone
    assert proc.returncode == 0 and "4 queries" in log, log


def test_reuseport_keeps_every_datagram(free_port, identity) -> None:
    proc = start(free_port, identity, "--reuseport")
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Like NSD's plain-DNS socket on 853 next to its DoT: bound later, on the same port.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", free_port))
        other.setblocking(False)
        answers = [labmod.doq_query("127.0.0.1", "www.doq.test.", "A", port=free_port) for _ in range(4)]
        time.sleep(0.1)
        with pytest.raises(BlockingIOError):
            other.recv(2048)
    finally:
        other.close()
        stop(proc)
    assert all(a.rcode() == 0 and a.answer for a in answers), answers
