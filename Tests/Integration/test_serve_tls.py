"""`sotto serve --listen-tls`: DNS-over-TLS for the resolver's own clients (RFC 7858; RFC 9539 §4.4,
OE-4), checked with BIND's `dig +tls` and Python's ssl module against the NSD lab."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import subprocess
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from capture import Capture
from cases import WWW
from harness import ctl, dig_query, fmt_rrs, framed, labmod, read_answer, require, scaled, wait_until

QNAME_WIRE = b"\x03www\x07example\x04test\x00"


def serve_tls(sotto, tmp_path, *extra):
    """`sotto serve` with a control socket and DoT on a second free port; returns (server, DoT
    port, control socket)."""
    tls_port = labmod.free_port("127.0.0.1")
    sock = tmp_path / "ctl.sock"
    srv = sotto.serve(labmod.free_port("127.0.0.1"), "--listen-tls", f"127.0.0.1:{tls_port}",
                      "--control", str(sock), *extra)
    wait_until("the control socket", sock.exists, timeout=10, every=0.05)
    wait_until(f"DoT listening on {tls_port}", lambda: not labmod.port_free("127.0.0.1", tls_port),
               timeout=10, every=0.05)
    return srv, tls_port, sock


def listener_stats(sotto, sock) -> dict:
    return ctl(sotto, sock, "stats")["stats"]["listener"]


def client_context() -> ssl.SSLContext:
    """An opportunistic DoT client (RFC 7858 §4.1: no authentication) offering ALPN "dot"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["dot"])
    return context


def tls_client(port: int, session: ssl.SSLSession | None = None, context: ssl.SSLContext | None = None):
    context = context or client_context()
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    return context.wrap_socket(raw, session=session)


def spki_pin(der_certificate: bytes) -> str:
    """base64 SHA-256 of the certificate's SubjectPublicKeyInfo, computed by the openssl CLI."""
    pem = ssl.DER_cert_to_PEM_cert(der_certificate)
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem.encode(), capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}", "-days", "2"],
                   check=True, capture_output=True)
    return cert, key


def test_dig_over_tls_gets_answers_and_nothing_crosses_in_cleartext(lab, sotto, tmp_path):
    """BIND's DoT client gets the lab's answers over the TLS port; on that port only TLS records
    travel (the question's name never appears in a payload), and one connection carries two
    queries (dig +keepopen)."""
    require(Capture.tcpdump() is not None, "tcpdump (apt-get install tcpdump)")
    srv, tls_port, sock = serve_tls(sotto, tmp_path)
    with srv, Capture(tmp_path / "dot.pcap", bpf=f"tcp port {tls_port}") as cap:
        r = dig_query("127.0.0.1", tls_port, "www.example.test.", "A", "+tls", "+stats")
        assert r.status == "NOERROR" and r.answer == WWW, r.raw
        assert "(TLS)" in r.raw, f"dig did not use TLS:\n{r.raw}"
        two = subprocess.run(["dig", "+tls", "+keepopen", "-p", str(tls_port), "@127.0.0.1",
                              "www.example.test.", "A", "nope.example.test.", "A", "+noall", "+comments"],
                             capture_output=True, text=True, timeout=scaled(30))
        assert two.stdout.count("status: NOERROR") == 1 and two.stdout.count("status: NXDOMAIN") == 1, two.stdout
        stats = listener_stats(sotto, sock)
    assert stats["tlsQueries"] == 3 and stats["tlsHandshakes"] == 2, stats
    assert stats["tlsHandshakeFailures"] == 0 and stats["tlsErrors"] == 0, stats
    with_payload = [p for p in cap.packets if p.payload]
    assert with_payload, "the capture saw no DoT traffic"
    for p in with_payload:
        assert QNAME_WIRE not in p.payload, f"the question's name crossed in cleartext: {p}"
    starts = [p for p in with_payload if p.tls_record_types]
    assert len(starts) >= len(with_payload) // 2, "most segments on the TLS port do not start with a TLS record"


def test_operator_certificate_alpn_pipelining_and_resumption(lab, sotto, tmp_path):
    """With --tls-certificate/--tls-key the client sees that certificate, ALPN "dot" is chosen,
    two queries written at once are both answered on one connection, the logged pin is the
    certificate's, and a second connection resumes the TLS session (RFC 7858 §3.4)."""
    cert, key = make_certificate(tmp_path, "dot.sotto.test")
    srv, tls_port, sock = serve_tls(sotto, tmp_path, "--tls-certificate", str(cert), "--tls-key", str(key),
                                    "--log-level", "notice")
    with srv:
        context = client_context()
        with tls_client(tls_port, context=context) as conn:
            presented = conn.getpeercert(binary_form=True)
            assert presented == ssl.PEM_cert_to_DER_cert(cert.read_text()), "not the operator's certificate"
            assert conn.selected_alpn_protocol() == "dot"
            first = dns.message.make_query("www.example.test.", "A", use_edns=True)
            second = dns.message.make_query("nope.example.test.", "A", use_edns=True)
            conn.sendall(framed(first) + framed(second))
            answers = {m.id: m for m in (read_answer(conn), read_answer(conn))}
            assert set(answers) == {first.id, second.id}, answers
            www = answers[first.id]
            assert www.rcode() == dns.rcode.NOERROR
            got = {str(rd) for rrset in www.answer for rd in rrset}
            assert got == {data for _, _, data in WWW}, f"{got} against\n{fmt_rrs(WWW)}"
            assert answers[second.id].rcode() == dns.rcode.NXDOMAIN
            session = conn.session
        with tls_client(tls_port, session=session, context=context) as again:
            again.sendall(framed(dns.message.make_query("www.example.test.", "A")))
            assert read_answer(again).rcode() == dns.rcode.NOERROR
            assert again.session_reused, "the second connection did not resume the TLS session"
        pin = spki_pin(presented)
        wait_until("the pin in the log", lambda: f"sha256/{pin}" in srv.log(), timeout=5)
        assert "self-signed" not in srv.log()


def test_self_signed_certificate_pin_is_logged(lab, sotto, tmp_path):
    """Without certificate files Sotto makes one at start and logs, as a warning, its SPKI pin,
    which matches what clients are shown."""
    srv, tls_port, sock = serve_tls(sotto, tmp_path)
    with srv:
        with tls_client(tls_port) as conn:
            pin = spki_pin(conn.getpeercert(binary_form=True))
            conn.sendall(framed(dns.message.make_query("www.example.test.", "A")))
            assert read_answer(conn).rcode() == dns.rcode.NOERROR
        log = srv.log()
        assert "self-signed" in log and f"sha256/{pin}" in log, log
        # The dashboard's `listening` line and `ctl stats` name the DoT address.
        listeners = ctl(sotto, sock, "stats")["stats"].get("listeners")
        assert f"dot 127.0.0.1:{tls_port}" in (listeners or []), listeners


def test_cleartext_and_silent_clients_on_the_tls_port_are_cut_off_and_counted(lab, sotto, tmp_path):
    """A cleartext DNS query sent to the TLS port gets no DNS answer (T-9's mirror: no cleartext
    on a DoT port) and the connection closes; a client that never starts its handshake is closed
    after the idle timeout. Both count as failed handshakes, and DoT still serves afterwards."""
    srv, tls_port, sock = serve_tls(sotto, tmp_path, "--tcp-idle-timeout", "1")
    with srv:
        query = dns.message.make_query("www.example.test.", "A")
        with socket.create_connection(("127.0.0.1", tls_port), timeout=scaled(10)) as raw:
            raw.sendall(framed(query))
            got = b""
            while chunk := raw.recv(4096):
                got += chunk
            assert got[2:4] != query.to_wire()[:2], f"a cleartext DNS answer came back: {got!r}"
            assert not got or got[0] == 21, f"expected nothing or a TLS alert, got {got[:16]!r}"
        with socket.create_connection(("127.0.0.1", tls_port), timeout=scaled(10)) as silent:
            assert silent.recv(4096) == b"", "the silent connection was not closed"
        stats = listener_stats(sotto, sock)
        assert stats["tlsHandshakeFailures"] == 2 and stats["tlsQueries"] == 0, stats
        r = dig_query("127.0.0.1", tls_port, "www.example.test.", "A", "+tls")
        assert r.status == "NOERROR" and r.answer == WWW, r.raw


def test_close_notify_after_a_query_still_gets_its_answer_then_the_close(lab, sotto, tmp_path):
    """A client that sends a query and at once its close_notify (its half-close, RFC 7766 §6.2.4)
    still gets the answer, and then the connection closes without waiting for the idle timeout
    (30 s here; the socket gives up after 10)."""
    srv, tls_port, sock = serve_tls(sotto, tmp_path, "--tcp-idle-timeout", "30")
    with srv:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(incoming, outgoing)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=scaled(10)) as raw:
            def send_pending():
                if data := outgoing.read():
                    raw.sendall(data)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    send_pending()
                    incoming.write(raw.recv(65536))
            send_pending()
            query = dns.message.make_query("www.example.test.", "A")
            tls.write(framed(query))
            with pytest.raises(ssl.SSLWantReadError):
                tls.unwrap()  # close_notify goes out; the server's has not come yet
            send_pending()
            plaintext = b""
            while chunk := raw.recv(65536):  # until the server closes
                incoming.write(chunk)
                try:
                    while piece := tls.read(65536):
                        plaintext += piece
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
        assert len(plaintext) > 2, "no answer before the close"
        answer = dns.message.from_wire(plaintext[2:])
        assert answer.id == query.id and answer.rcode() == dns.rcode.NOERROR, answer
        assert listener_stats(sotto, sock)["tcpIdleClosed"] == 0


@pytest.mark.parametrize("case", ["key-missing", "unreadable", "mismatch", "garbage", "bad-chain", "encrypted-key",
                                  "bad-address"])
def test_bad_tls_settings_are_clear_errors(sotto, tmp_path, case):
    """Wrong TLS settings stop `serve` before it listens, with exit 64 and a message that says what
    is wrong."""
    cert, key = make_certificate(tmp_path, "a")
    _, other_key = make_certificate(tmp_path, "b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    # The leaf, then a chain certificate that does not parse: not sent as a shorter chain.
    bad_chain = tmp_path / "bad-chain.pem"
    bad_chain.write_text(cert.read_text() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    # An encrypted key fails with a message instead of a passphrase prompt (stdin is closed).
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
                   check=True, capture_output=True)
    flags, expected = {
        "key-missing": (["--tls-certificate", str(cert)], "tls-certificate and tls-key go together"),
        "unreadable": (["--tls-certificate", str(tmp_path / "none.crt"), "--tls-key", str(key)],
                       "cannot read certificate file"),
        "mismatch": (["--tls-certificate", str(cert), "--tls-key", str(other_key)], "does not match"),
        "garbage": (["--tls-certificate", str(garbage), "--tls-key", str(key)], "no PEM certificate found"),
        "bad-chain": (["--tls-certificate", str(bad_chain), "--tls-key", str(key)],
                      "certificate 2 of the 2 in the file cannot be read"),
        "encrypted-key": (["--tls-certificate", str(cert), "--tls-key", str(encrypted)],
                          "the private key is encrypted"),
        "bad-address": ([], "is not an IP address"),
    }[case]
    listen_tls = "localhost:853" if case == "bad-address" else f"127.0.0.1:{labmod.free_port('127.0.0.1')}"
    r = sotto.run("serve", "--listen", f"127.0.0.1:{labmod.free_port('127.0.0.1')}", "--listen-tls", listen_tls,
                  *flags, timeout=20)
    assert r.returncode == 64, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert expected in r.stderr, r.stderr
