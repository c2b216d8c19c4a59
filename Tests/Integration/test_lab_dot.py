"""Self-test of the lab's port-853 behaviours and of the capture harness (no Sotto
needed).  If these fail, the DoT results in test_dot.py mean nothing."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest

from harness import dig_query, labmod

VALID = [("test-1", "ns1.nic.test"), ("example", "ns1.example.test"), ("dot", "ns1.dot.test"),
         ("mixed-dot", "ns1.mixed.test")]


@pytest.mark.parametrize("name,host", VALID, ids=[n for n, _ in VALID])
def test_valid_dot_server_verifies_against_lab_ca(lab, name, host):
    inst = lab.instance(name)
    info = labmod.tls_handshake(inst.address, cafile=lab.ca_file, server_hostname=host)
    assert info["version"] in ("TLSv1.3", "TLSv1.2"), info


def test_badcert_server_is_expired_and_for_the_wrong_name(lab):
    inst = lab.instance("badcert")
    # Unverified handshake works (what an opportunistic client does) ...
    info = labmod.tls_handshake(inst.address)
    assert info["cert_der"], info
    pem = ssl.DER_cert_to_PEM_cert(info["cert_der"])
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-enddate", "-ext", "subjectAltName"],
                         input=pem, capture_output=True, text=True, timeout=10).stdout
    assert labmod.BADCERT_NAME in out and "ns1.badcert.test" not in out, out
    assert "2025" in out, out
    # ... and verification against the lab CA fails because it is expired.
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        labmod.tls_handshake(inst.address, cafile=lab.ca_file)
    assert "expired" in str(e.value), e.value


def test_refused_and_do53_only_servers_reset_853(lab):
    for name in ("refused", "mixed-plain", "test-2"):
        assert labmod.refused_check(lab.instance(name).address), f"{name}: TCP 853 is not refused"


def test_silent_server_accepts_and_never_answers(lab):
    addr = lab.instance("silent").address
    with socket.create_connection((addr, labmod.DOT_PORT), timeout=2) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.recv(1)


@pytest.mark.parametrize("name,qname", [("dot", "www.dot.test."), ("badcert", "www.badcert.test."),
                                        ("mixed-dot", "www.mixed.test."), ("example", "www.example.test.")])
def test_dot_answers_equal_do53(lab, name, qname):
    addr = lab.instance(name).address
    do53 = dig_query(addr, lab.port, qname, "A", "+norec")
    dot = dig_query(addr, labmod.DOT_PORT, qname, "A", "+norec", "+tls")
    assert do53.status == "NOERROR" and do53.answer, do53.raw
    assert dot.status == do53.status and dot.answer == do53.answer, f"DoT:\n{dot.raw}\nDo53:\n{do53.raw}"


def test_mixed_servers_serve_the_same_zone(lab):
    a = dig_query("127.53.16.1", lab.port, "h7.mixed.test.", "A", "+norec")
    b = dig_query("127.53.16.2", lab.port, "h7.mixed.test.", "A", "+norec")
    assert a.answer == b.answer and a.answer, (a.raw, b.raw)


def test_capture_sees_tcp53_and_a_tls_session(lab, capture):
    cap = capture()
    t0 = time.time()
    r = dig_query("127.53.12.1", lab.port, "www.dot.test.", "A", "+norec", "+tcp")
    assert r.status == "NOERROR", r.raw
    mark = time.time()
    r = dig_query("127.53.12.1", labmod.DOT_PORT, "h1.dot.test.", "A", "+norec", "+tls")
    assert r.status == "NOERROR", r.raw
    try:
        socket.create_connection(("127.53.14.1", labmod.DOT_PORT), timeout=2).close()
    except ConnectionRefusedError:
        pass
    cap.stop()
    trace = cap.summary()
    assert cap.dropped == 0, cap.stderr_lines
    tcp53 = cap.to("127.53.12.1", lab.port, "TCP")
    assert tcp53 and tcp53[0].syn and tcp53[0].time >= t0 - 1, trace
    assert any(p.payload_len > 0 for p in tcp53), trace
    assert not cap.to("127.53.12.1", lab.port, "UDP"), trace
    assert len(cap.syns("127.53.12.1", 853)) == 1, trace
    assert cap.syns("127.53.12.1", 853)[0].time >= mark, trace
    assert cap.tls_app_data_to("127.53.12.1") and cap.tls_app_data_from("127.53.12.1"), trace
    ports = cap.first_per_port("127.53.12.1")
    assert set(ports) == {lab.port, 853} and ports[lab.port].time < ports[853].time, ports
    assert len(cap.syns("127.53.14.1", 853)) == 1 and any(p.rst for p in cap.from_("127.53.14.1", 853)), trace
