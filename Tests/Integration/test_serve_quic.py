"""`sotto serve --listen-quic`: DNS-over-QUIC for the resolver's own clients (RFC 9250; RFC 9539
§4.4, OE-4), checked with dnspython's DoQ client (on aioquic) against the NSD lab."""

from __future__ import annotations

import socket
import struct
import time

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.quic
import dns.rcode
import pytest
from dns.quic._common import UnexpectedEOF  # a reset stream ends without its answer

from capture import Capture
from cases import WWW
from harness import ctl, labmod, require, scaled, wait_until

QNAME_WIRE = b"\x03www\x07example\x04test\x00"
PADDING = 12  # EDNS(0) Padding option code (RFC 7830)


def serve_quic(sotto, tmp_path, *extra):
    """`sotto serve` with a control socket and DoQ on a second free port; returns (server, DoQ port,
    control socket)."""
    quic_port = labmod.free_port("127.0.0.1")
    sock = tmp_path / "ctl.sock"
    srv = sotto.serve(labmod.free_port("127.0.0.1"), "--listen-quic", f"127.0.0.1:{quic_port}",
                      "--control", str(sock), *extra)
    wait_until("the control socket", sock.exists, timeout=10, every=0.05)
    wait_until(f"DoQ listening on {quic_port}", lambda: labmod.udp_bound("127.0.0.1", quic_port),
               timeout=10, every=0.05)
    return srv, quic_port, sock


def listener_stats(sotto, sock) -> dict:
    return ctl(sotto, sock, "stats")["stats"]["listener"]


def doq(port: int, qname: str, rdtype: str = "A", connection=None, **make) -> dns.message.Message:
    """One query over DoQ with dnspython (opportunistic: the certificate is not verified)."""
    query = dns.message.make_query(qname, rdtype, **make)
    return dns.query.quic(query, "127.0.0.1", port=port, timeout=scaled(10), verify=False, connection=connection)


def addresses(answer: dns.message.Message) -> set[str]:
    return {str(rd) for rrset in answer.answer for rd in rrset}


def option_codes(message: dns.message.Message) -> list[int]:
    return [int(o.otype) for o in message.options]


def test_dnspython_over_quic_gets_answers_and_nothing_crosses_in_cleartext(lab, sotto, tmp_path):
    """A third-party DoQ client gets the lab's answers over the QUIC port; on that port the
    question's name never appears in a datagram; the counters and the `listening` line show DoQ."""
    require(Capture.tcpdump() is not None, "tcpdump (apt-get install tcpdump)")
    srv, quic_port, sock = serve_quic(sotto, tmp_path)
    with srv, Capture(tmp_path / "doq.pcap", bpf=f"udp port {quic_port}") as cap:
        www = doq(quic_port, "www.example.test.")
        assert www.rcode() == dns.rcode.NOERROR and www.id == 0, www
        assert addresses(www) == {data for _, _, data in WWW}, www
        assert doq(quic_port, "nope.example.test.").rcode() == dns.rcode.NXDOMAIN
        stats = listener_stats(sotto, sock)
        listeners = ctl(sotto, sock, "stats")["stats"].get("listeners")
    assert stats["quicQueries"] == 2 and stats["quicHandshakes"] == 2, stats
    assert stats["queries"] == 2 and stats["tcpQueries"] == 0, stats
    assert stats["quicProtocolErrors"] == 0 and stats["quicConnectionsRejected"] == 0, stats
    assert f"doq 127.0.0.1:{quic_port}" in (listeners or []), listeners
    with_payload = [p for p in cap.packets if p.payload]
    assert len(with_payload) >= 4, f"the capture saw too little DoQ traffic: {len(with_payload)} datagrams"
    for p in with_payload:
        assert QNAME_WIRE not in p.payload, f"the question's name crossed in cleartext: {p}"


def test_responses_to_padded_queries_are_padded_to_468_octet_blocks(lab, sotto, tmp_path):
    """RFC 8467 §4.1: a response to a padded query is padded to a multiple of 468 octets, over DoQ
    and DoT alike; a response to an unpadded query carries no padding (RFC 7830 §4)."""
    tls_port = labmod.free_port("127.0.0.1")
    srv, quic_port, sock = serve_quic(sotto, tmp_path, "--listen-tls", f"127.0.0.1:{tls_port}")
    with srv:
        padded = doq(quic_port, "www.example.test.", use_edns=0, pad=128)
        assert padded.rcode() == dns.rcode.NOERROR and addresses(padded) == {data for _, _, data in WWW}
        assert PADDING in option_codes(padded), padded
        assert len(padded.to_wire()) % 468 == 0, len(padded.to_wire())
        plain = doq(quic_port, "www.example.test.", use_edns=0)
        assert PADDING not in option_codes(plain) and len(plain.to_wire()) % 468 != 0, plain
        wait_until(f"DoT listening on {tls_port}", lambda: not labmod.port_free("127.0.0.1", tls_port),
                   timeout=10, every=0.05)
        query = dns.message.make_query("nope.example.test.", "A", use_edns=0, pad=128)
        over_tls = dns.query.tls(query, "127.0.0.1", port=tls_port, timeout=scaled(10),
                                 verify=False)
        assert over_tls.rcode() == dns.rcode.NXDOMAIN and PADDING in option_codes(over_tls), over_tls
        assert len(over_tls.to_wire()) % 468 == 0, len(over_tls.to_wire())
        # Plain UDP is never padded, even when the query is.
        over_udp = dns.query.udp(query, "127.0.0.1", port=srv.port, timeout=scaled(10))
        assert PADDING not in option_codes(over_udp), over_udp
        # The answer is in the packet cache now, which serves DoT as well: a padded DoT query must
        # still get a padded answer, not the cached unpadded one (an unpadded query gets none).
        plain_tls = dns.query.tls(dns.message.make_query("nope.example.test.", "A", use_edns=0), "127.0.0.1",
                                  port=tls_port, timeout=scaled(10), verify=False)
        assert plain_tls.rcode() == dns.rcode.NXDOMAIN and PADDING not in option_codes(plain_tls), plain_tls
        again = dns.query.tls(query, "127.0.0.1", port=tls_port, timeout=scaled(10), verify=False)
        assert PADDING in option_codes(again) and len(again.to_wire()) % 468 == 0, again


def test_concurrent_streams_on_one_connection(lab, sotto, tmp_path):
    """Several queries on one connection, each on its own stream and all written before any answer
    is read (RFC 9250 §5.6), are all answered, on one handshake."""
    srv, quic_port, sock = serve_quic(sotto, tmp_path)
    names = ["www.example.test.", "nope.example.test.", "www.example.test.", "nope2.example.test."]
    with srv, dns.quic.SyncQuicManager(verify_mode=False) as manager:
        connection = manager.connect("127.0.0.1", quic_port)
        streams = []
        for name in names:
            query = dns.message.make_query(name, "A")
            query.id = 0
            stream = connection.make_stream(timeout=scaled(10))
            stream.send(query.to_wire(), True)
            streams.append(stream)
        answers = [dns.message.from_wire(stream.receive(scaled(10))) for stream in streams]
        assert [dns.rcode.to_text(a.rcode()) for a in answers] == ["NOERROR", "NXDOMAIN", "NOERROR", "NXDOMAIN"]
        assert [str(a.question[0].name) for a in answers] == names
        stats = listener_stats(sotto, sock)
    assert stats["quicQueries"] == 4 and stats["quicHandshakes"] == 1, stats


@pytest.mark.parametrize("case", ["nonzero-id", "keepalive", "oversized"])
def test_queries_that_break_doq_close_the_connection_and_are_counted(lab, sotto, tmp_path, case):
    """RFC 9250 §4.2.1 and §5.5.2: a query with a Message ID other than 0, or with an EDNS TCP
    keepalive option, is a DOQ_PROTOCOL_ERROR: no answer, the connection is closed, the error is
    counted; other connections are served on. A query over 4,096 octets gets its stream reset
    (the bound on what a client can make the listener buffer), counted the same way."""
    srv, quic_port, sock = serve_quic(sotto, tmp_path)
    with srv, dns.quic.SyncQuicManager(verify_mode=False) as manager:
        connection = manager.connect("127.0.0.1", quic_port)
        if case == "nonzero-id":
            query = dns.message.make_query("www.example.test.", "A")
            query.id = 4242
        elif case == "keepalive":
            query = dns.message.make_query("www.example.test.", "A", use_edns=0,
                                           options=[dns.edns.GenericOption(11, b"")])
            query.id = 0
        else:
            query = dns.message.make_query("www.example.test.", "A", use_edns=0,
                                           options=[dns.edns.GenericOption(65001, b"x" * 4100)])
            query.id = 0
        stream = connection.make_stream(timeout=scaled(10))
        stream.send(query.to_wire(max_size=65535), True)
        quic = connection._connection  # aioquic's QuicConnection: how the server closed it
        if case == "oversized":
            with pytest.raises(UnexpectedEOF):  # the stream is reset, no answer
                stream.receive(scaled(10))
            assert quic._close_event is None, quic._close_event
        else:
            # At once, not when the client gives up: CONNECTION_CLOSE with DOQ_PROTOCOL_ERROR.
            wait_until("the connection closed", lambda: quic._close_event is not None, timeout=5, every=0.05)
            assert quic._close_event.error_code == 0x2, quic._close_event
        wait_until("the protocol error counted", lambda: listener_stats(sotto, sock)["quicProtocolErrors"] == 1,
                   timeout=5)
        assert doq(quic_port, "www.example.test.").rcode() == dns.rcode.NOERROR
        assert listener_stats(sotto, sock)["quicQueries"] == 1


def test_junk_datagrams_and_a_full_connection_table_do_not_stop_the_service(lab, sotto, tmp_path):
    """Datagrams that are not QUIC are dropped and counted; with --max-tcp-connections 1 a second
    DoQ client is not let in while the first holds its connection (counted, and no Retry first:
    it would come back to a full table), and is once the first has gone."""
    srv, quic_port, sock = serve_quic(sotto, tmp_path, "--max-tcp-connections", "1")
    with srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for payload in (b"\x00" * 40, b"\xc0" + b"\xff" * 1199, struct.pack("!H", 12) + b"x" * 12):
                junk.sendto(payload, ("127.0.0.1", quic_port))
        wait_until("junk counted", lambda: listener_stats(sotto, sock)["quicDatagramsDropped"] >= 3, timeout=5)
        with dns.quic.SyncQuicManager(verify_mode=False) as first:
            held = first.connect("127.0.0.1", quic_port)
            assert doq(quic_port, "www.example.test.", connection=held).rcode() == dns.rcode.NOERROR
            with pytest.raises(dns.exception.DNSException):
                dns.query.quic(dns.message.make_query("www.example.test.", "A"), "127.0.0.1", port=quic_port,
                               timeout=2, verify=False)
            stats = listener_stats(sotto, sock)
            assert stats["quicConnectionsRejected"] >= 1 and stats["quicRetries"] == 0, stats
        # The first client closed its connection (CONNECTION_CLOSE): a new one gets in.
        wait_until("a new client served", lambda: doq(quic_port, "www.example.test.").rcode() == dns.rcode.NOERROR,
                   timeout=10, every=0.5)


def silent_initial(port: int) -> None:
    """A client Initial (aioquic) sent from a socket that is closed at once: a client that never
    finishes its handshake, as a spoofed source address would be."""
    import ssl
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    connection = QuicConnection(configuration=QuicConfiguration(
        is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE))
    connection.connect(("127.0.0.1", port), now=time.time())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data, _ in connection.datagrams_to_send(now=time.time()):
            s.sendto(data, ("127.0.0.1", port))


def test_handshakes_that_never_finish_cannot_fill_the_connection_table(lab, sotto, tmp_path):
    """RFC 9000 §8.1.2: once half the DoQ connection slots are taken, a new client gets a Retry
    and a slot only with the token, so Initials from clients that never answer (spoofed sources)
    hold no slot; a real client (aioquic follows the Retry) still gets in. With
    --max-tcp-connections 4, one real and one silent connection take half the table."""
    srv, quic_port, sock = serve_quic(sotto, tmp_path, "--max-tcp-connections", "4", "--tcp-idle-timeout", "30")
    with srv, dns.quic.SyncQuicManager(verify_mode=False) as first:
        held = first.connect("127.0.0.1", quic_port)
        assert doq(quic_port, "www.example.test.", connection=held).rcode() == dns.rcode.NOERROR
        silent_initial(quic_port)  # a slot (datagrams are read in order): the table is half full now
        for _ in range(12):
            silent_initial(quic_port)
        wait_until("Retries for the silent clients", lambda: listener_stats(sotto, sock)["quicRetries"] >= 12,
                   timeout=5)
        late = doq(quic_port, "www.example.test.")
        assert late.rcode() == dns.rcode.NOERROR, late
        stats = listener_stats(sotto, sock)
    # Without Retry the silent clients would hold every slot and the real one would be refused.
    assert stats["quicConnectionsRejected"] == 0 and stats["quicRetries"] >= 12, stats


def test_a_forged_retry_token_is_told_invalid_token_at_once(lab, sotto, tmp_path):
    """RFC 9000 §8.1.2: an Initial whose Retry token does not validate (forged here: ngtcp2's
    Retry magic byte, then noise) is answered with a CONNECTION_CLOSE carrying INVALID_TOKEN, so
    the client learns at once instead of timing out; it gets no slot, and it is counted."""
    import ssl
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    srv, quic_port, sock = serve_quic(sotto, tmp_path)
    with srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        connection = QuicConnection(configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE, token=b"\xb6" + bytes(range(60))))
        connection.connect(("127.0.0.1", quic_port), now=time.time())
        closed = None
        deadline = time.time() + scaled(5)
        while closed is None and time.time() < deadline:
            for data, _ in connection.datagrams_to_send(now=time.time()):
                s.sendto(data, ("127.0.0.1", quic_port))
            try:
                connection.receive_datagram(s.recv(2048), ("127.0.0.1", quic_port), now=time.time())
            except socket.timeout:
                pass
            closed = connection._close_event  # set when the close arrives (the event only after draining)
        assert closed is not None, "no CONNECTION_CLOSE for a forged Retry token"
        assert closed.error_code == 0x0B, closed  # INVALID_TOKEN
        stats = listener_stats(sotto, sock)
        assert stats["quicInvalidTokens"] >= 1 and stats["quicHandshakes"] == 0, stats
        assert doq(quic_port, "www.example.test.").rcode() == dns.rcode.NOERROR


def test_clients_outside_the_allowed_networks_are_refused_over_doq(lab, sotto, tmp_path):
    """Access control applies to DoQ as to UDP and TCP: a client outside --allow gets REFUSED."""
    srv, quic_port, sock = serve_quic(sotto, tmp_path, "--allow", "10.0.0.0/8")
    with srv:
        assert doq(quic_port, "www.example.test.").rcode() == dns.rcode.REFUSED
        stats = listener_stats(sotto, sock)
    assert stats["notAllowed"] == 1 and stats["quicQueries"] == 1, stats


@pytest.mark.parametrize("case", ["bad-address", "port-taken"])
def test_bad_quic_settings_are_clear_errors(sotto, tmp_path, case):
    """A DoQ address that is not an IP address, or a UDP port another process holds, stops `serve`
    with exit 64 and a message naming it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        listen_quic, expected = {
            "bad-address": ("localhost:853", "is not an IP address"),
            "port-taken": (f"127.0.0.1:{taken}", f"127.0.0.1:{taken} (DoQ)"),
        }[case]
        r = sotto.run("serve", "--listen", f"127.0.0.1:{labmod.free_port('127.0.0.1')}", "--listen-quic",
                      listen_quic, timeout=20)
    assert r.returncode == 64, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert expected in r.stderr, r.stderr
