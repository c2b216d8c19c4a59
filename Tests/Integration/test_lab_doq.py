"""Self-test of the lab's DoQ servers (Lab/doq_server.py), its UDP 853 behaviours and the
QUIC part of the capture parser (no Sotto needed).  If these fail, test_doq.py means nothing.

Needs aioquic and dnspython for the test's python (`make test` installs them): a missing
one fails under CI=true and skips otherwise."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time

import pytest

from harness import dig_query, labmod, require

DOQ, BOTH, QUICSILENT, BADQUIC = "127.53.17.1", "127.53.18.1", "127.53.19.1", "127.53.20.1"
SERVERS = [("doq", DOQ, "www.doq.test.", "ns1.doq.test"), ("both", BOTH, "www.both.test.", "ns1.both.test"),
           ("badquic", BADQUIC, "www.badquic.test.", "ns1.badquic.test")]


@pytest.fixture(scope="module")
def doq_lab(lab):
    require(lab.with_doq, "aioquic/dnspython not importable (python3 -m pip install aioquic dnspython): "
                          "the lab runs no DoQ servers")
    return lab


@pytest.mark.parametrize("name,addr,qname,host", SERVERS, ids=[s[0] for s in SERVERS])
def test_doq_answers_equal_do53_and_verify_against_lab_ca(doq_lab, name, addr, qname, host):
    do53 = dig_query(addr, doq_lab.port, qname, "A", "+norec")
    r = labmod.doq_query(addr, qname, "A", cafile=doq_lab.ca_file, server_hostname=host)
    assert do53.status == "NOERROR" and do53.answer, do53.raw
    assert r.id == 0 and r.rcode() == 0, r
    got = {(str(rr.name).lower(), "A", rd.to_text()) for rr in r.answer for rd in rr}
    assert got == {(o, t, d) for o, t, d in do53.answer}, f"DoQ {r}\nDo53 {do53.raw}"
    assert r.flags & 0x0400, f"DoQ answer is not authoritative: {r}"


def test_doq_negative_answers(doq_lab):
    import dns.rcode
    nx = labmod.doq_query(DOQ, "nope.doq.test.", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and any(rr.rdtype == 6 for rr in nx.authority), nx
    nodata = labmod.doq_query(DOQ, "www.doq.test.", "MX")
    assert nodata.rcode() == 0 and not nodata.answer and any(rr.rdtype == 6 for rr in nodata.authority), nodata
    outside = labmod.doq_query(DOQ, "www.example.test.", "A")
    assert outside.rcode() == dns.rcode.REFUSED, outside


def test_both_serves_dot_and_doq(doq_lab):
    info = labmod.tls_handshake(BOTH, cafile=doq_lab.ca_file, server_hostname="ns1.both.test")
    assert info["version"] == "TLSv1.3", info
    dot = dig_query(BOTH, labmod.DOT_PORT, "h3.both.test.", "A", "+norec", "+tls")
    assert dot.status == "NOERROR" and dot.answer, dot.raw
    # Every QUIC connection must reach the DoQ server, never NSD's plain socket on UDP 853.
    for i in range(8):
        r = labmod.doq_query(BOTH, f"h{i + 1}.both.test.", "A", timeout=2)
        assert r.rcode() == 0 and r.answer, r


def test_udp853_behaviours(doq_lab):
    assert labmod.udp_silent_check(QUICSILENT), "quicsilent.test.: UDP 853 is not silent"
    for addr in (DOQ, QUICSILENT, BADQUIC):
        assert labmod.refused_check(addr), f"{addr}: TCP 853 is not refused"
    for addr in ("127.53.14.1", "127.53.16.2"):  # Do53-only servers: UDP 853 unreachable
        assert labmod.udp_refused_check(addr), f"{addr}: UDP 853 is not refused"
    with pytest.raises(Exception) as e:  # dnspython times out on a black hole
        labmod.doq_query(QUICSILENT, "www.quicsilent.test.", timeout=1.0)
    assert "timed out" in str(e.value).lower() or type(e.value).__name__ == "Timeout", repr(e.value)


@pytest.mark.parametrize("label", ["reset", "badid", "badlen"])
def test_badquic_misbehaves_by_name(doq_lab, label):
    with pytest.raises(Exception) as e:
        labmod.doq_query(BADQUIC, f"{label}.badquic.test.", timeout=2)
    assert type(e.value).__name__ in ("UnexpectedEOF", "BadResponse", "FormError", "StreamResetError",
                                      "ConnectionError", "Timeout"), repr(e.value)
    log = (doq_lab.instance("badquic").doq_log).read_text()
    assert f"{label}.badquic.test." in log, log[-1000:]
    ok = labmod.doq_query(BADQUIC, "www.badquic.test.", timeout=2)  # the server still works
    assert ok.rcode() == 0 and ok.answer, ok


def test_nonzero_query_id_closes_with_protocol_error(doq_lab):
    """RFC 9250 §4.2.1: the server closes the connection with DOQ_PROTOCOL_ERROR (0x2)."""
    import dns.message
    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration

    async def go():
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE)
        async with connect(DOQ, labmod.DOT_PORT, configuration=cfg) as c:
            q = dns.message.make_query("www.doq.test.", "A")
            q.id = 0x1234
            w = q.to_wire()
            reader, writer = await c.create_stream()
            writer.write(struct.pack("!H", len(w)) + w)
            writer.write_eof()
            await asyncio.wait_for(c.wait_closed(), 3)
            return c._quic._close_event
    ev = asyncio.run(go())
    assert ev is not None and ev.error_code == 0x2, ev


def _resume_twice():
    """Three connections with aioquic: fresh, resumed with the ticket (query as 0-RTT), and the same
    ticket again (single-use: full handshake).  Returns [(resumed, early_data_accepted, answer)]."""
    import dns.message
    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration
    tickets = []
    out = []

    async def one(name, ticket):
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE)
        cfg.session_ticket = ticket
        async with connect(DOQ, labmod.DOT_PORT, configuration=cfg, session_ticket_handler=tickets.append,
                           wait_connected=ticket is None) as c:
            q = dns.message.make_query(name, "A")
            q.id = 0
            w = q.to_wire()
            reader, writer = await c.create_stream()
            writer.write(struct.pack("!H", len(w)) + w)
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 3)
            await asyncio.sleep(0.2)  # let the ticket arrive
            out.append((c._quic.tls.session_resumed, c._quic.tls.early_data_accepted,
                        dns.message.from_wire(data[2:])))

    async def go():
        await one("www.doq.test.", None)
        assert tickets, "the DoQ server issued no session ticket"
        t = tickets[0]
        await one("www2.doq.test.", t)
        await one("h1.doq.test.", t)
    asyncio.run(go())
    return out


def test_session_ticket_resumption_0rtt_and_capture(doq_lab, capture):
    cap = capture()
    t0 = time.time()
    res = _resume_twice()
    cap.stop()
    trace = cap.summary(DOQ)
    assert [r[:2] for r in res] == [(False, False), (True, True), (False, False)], (
        f"expected fresh / resumed+0-RTT / fresh (single-use ticket): {[r[:2] for r in res]}")
    assert all(r[2].answer and r[2].id == 0 for r in res), res
    assert cap.dropped == 0, cap.stderr_lines
    conns = cap.quic_connections(DOQ)
    assert len(conns) == 3, f"expected 3 QUIC connections to {DOQ}:853, saw {conns}:\n{trace}"
    first = cap.first_to(DOQ)
    assert first.proto == "UDP" and first.dport == 853 and first.quic_types[0] == "Initial", trace
    assert first.time >= t0 - 1 and first.payload_len >= 1200, f"client Initials are padded to 1200:\n{trace}"
    assert len(cap.quic_0rtt_to(DOQ)) >= 1, f"no 0-RTT packet in the resumed connection:\n{trace}"
    assert cap.quic_1rtt_to(DOQ) and cap.quic_from(DOQ), trace
    assert not cap.to(DOQ, 53) and not cap.to(DOQ, 853, "TCP"), trace
    assert set(cap.first_per_port(DOQ)) == {853}, trace


def test_capture_parser_quic_vs_plain_dns(doq_lab, capture):
    """A plain DNS datagram to an NSD port is not mistaken for QUIC, and a silent UDP 853 server
    shows client Initials and nothing back."""
    cap = capture()
    dig_query(DOQ, doq_lab.port, "www.doq.test.", "A", "+norec")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\xc0\x00\x00\x00\x01\x08" + b"\x11" * 8 + b"\x08" + b"\x22" * 8 + b"\x00\x41\x00" + bytes(1174),
                 (QUICSILENT, labmod.DOT_PORT))
    cap.stop()
    assert cap.to(DOQ, 53, "UDP") and not cap.quic_to(DOQ, 53), cap.summary(DOQ)
    init = cap.quic_initials_to(QUICSILENT)
    assert len(init) == 1 and cap.quic_connections(QUICSILENT) == [(init[0].sport, b"\x22" * 8)], cap.summary()
    assert cap.payload_from(QUICSILENT, 853, "UDP") == 0, cap.summary(QUICSILENT)
