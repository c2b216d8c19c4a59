"""SIGHUP reloads the operator's DoT/DoQ certificate (`--tls-certificate`, `--tls-key`): a renewed
certificate (Let's Encrypt every 60 days, Android's Private DNS checks it) is taken without a
restart that would empty the cache. New DoT and DoQ connections get the new one, open connections
keep theirs, DoT sessions from before resume after it, and a broken file is logged and the
certificate in use kept. Checked with Python's
ssl module (DoT) and aioquic (DoQ) on what the server presents."""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl

import dns.message
import dns.query
import dns.quic
import dns.rcode

from harness import framed, labmod, read_answer, scaled, wait_until
from test_serve_tls import client_context, make_certificate, tls_client


def quic_certificate(port: int) -> bytes:
    """The DER certificate a DoQ handshake with 127.0.0.1:port presents (aioquic, no verification)."""
    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration
    from cryptography.hazmat.primitives.serialization import Encoding

    async def handshake() -> bytes:
        config = QuicConfiguration(is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE)
        async with connect("127.0.0.1", port, configuration=config) as client:
            await client.wait_connected()
            return client._quic.tls._peer_certificate.public_bytes(Encoding.DER)

    return asyncio.run(asyncio.wait_for(handshake(), scaled(10)))


def der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_sighup_reloads_the_certificate_for_new_dot_and_doq_connections(lab, sotto, tmp_path):
    a_cert, a_key = make_certificate(tmp_path, "old.sotto.test")
    b_cert, b_key = make_certificate(tmp_path, "new.sotto.test")
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(a_cert, cert)
    shutil.copy(a_key, key)
    tls_port, quic_port = labmod.free_port("127.0.0.1"), labmod.free_port("127.0.0.1")
    srv = sotto.serve(labmod.free_port("127.0.0.1"), "--listen-tls", f"127.0.0.1:{tls_port}",
                      "--listen-quic", f"127.0.0.1:{quic_port}", "--tls-certificate", str(cert),
                      "--tls-key", str(key), "--log-level", "notice")
    with srv:
        wait_until(f"DoT listening on {tls_port}", lambda: not labmod.port_free("127.0.0.1", tls_port),
                   timeout=10, every=0.05)
        wait_until(f"DoQ listening on {quic_port}", lambda: labmod.udp_bound("127.0.0.1", quic_port),
                   timeout=10, every=0.05)
        manager = dns.quic.SyncQuicManager(verify_mode=False)
        # A DoT session to resume after the reload (its ticket comes with the first answer).
        context = client_context()
        with tls_client(tls_port, context=context) as first:
            first.sendall(framed(dns.message.make_query("www.example.test.", "A")))
            assert read_answer(first).rcode() == dns.rcode.NOERROR
            session = first.session
        with tls_client(tls_port) as before, manager:
            assert before.getpeercert(binary_form=True) == der(a_cert)
            assert quic_certificate(quic_port) == der(a_cert)
            # A DoQ connection open across the reload: it keeps the old credentials, which the
            # engine frees only with their last connection (ASan runs check that).
            doq_open = manager.connect("127.0.0.1", quic_port)
            q = dns.message.make_query("www.example.test.", "A")
            assert dns.query.quic(q, "127.0.0.1", port=quic_port, connection=doq_open, timeout=scaled(10),
                                  verify=False).rcode() == dns.rcode.NOERROR
            # Renewed: the files are replaced, then SIGHUP.
            shutil.copy(b_cert, cert)
            shutil.copy(b_key, key)
            srv.proc.send_signal(signal.SIGHUP)
            wait_until("the reload in the log", lambda: "TLS certificate reloaded" in srv.log(), timeout=10)
            with tls_client(tls_port) as after:
                assert after.getpeercert(binary_form=True) == der(b_cert), "a new DoT connection kept the old one"
                after.sendall(framed(dns.message.make_query("www.example.test.", "A")))
                assert read_answer(after).rcode() == dns.rcode.NOERROR
            assert quic_certificate(quic_port) == der(b_cert), "a new DoQ connection kept the old certificate"
            # A client resumes its session across the reload (the ticket keys stay): no full
            # handshake for every DoT client after each renewal.
            with tls_client(tls_port, session=session, context=context) as resumed:
                resumed.sendall(framed(dns.message.make_query("www.example.test.", "A")))
                assert read_answer(resumed).rcode() == dns.rcode.NOERROR
                assert resumed.session_reused, "a DoT session from before the reload did not resume"
            # The connections opened before the reload are served on.
            before.sendall(framed(dns.message.make_query("www.example.test.", "A")))
            assert read_answer(before).rcode() == dns.rcode.NOERROR
            q = dns.message.make_query("www.example.test.", "AAAA")
            assert dns.query.quic(q, "127.0.0.1", port=quic_port, connection=doq_open, timeout=scaled(10),
                                  verify=False).rcode() == dns.rcode.NOERROR
            doq_open.close()
        # A broken file: logged, the certificate in use stays, the server serves on.
        cert.write_text("not a certificate\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_until("the failed reload in the log", lambda: "TLS certificate not reloaded" in srv.log(), timeout=10)
        assert "no PEM certificate found" in srv.log(), srv.log()
        assert srv.proc.poll() is None, "sotto died on a broken certificate file"
        with tls_client(tls_port) as still:
            assert still.getpeercert(binary_form=True) == der(b_cert)
        assert quic_certificate(quic_port) == der(b_cert)
